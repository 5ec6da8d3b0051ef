"""One headless Chromium (Debian's `chromium` + `chromium-driver`, driven by Selenium) for every browser test of the
session: the docs site and JupyterLab. `make browser` installs it; without it these tests fail and say so."""
import shutil
import tempfile
from pathlib import Path

import pytest

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@pytest.fixture(scope="session")
def browser():
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail(f"{CHROMIUM} and {CHROMEDRIVER} are needed for the browser tests: run `make browser` "
                    "(apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,1000", f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    driver.set_page_load_timeout(30)
    try: yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def console_errors(driver) -> list[str]:
    "Console messages of level SEVERE since the last call (Chromium's log is drained by reading it)."
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


@pytest.fixture(scope="session", autouse=True)
def warm_kernels():
    """Notebook kernels forked from one process that has done their imports (`jigsaw_forget.kernels`, the runner's own):
    about 10 s of a core saved per notebook run. Its kernelspec `python3` goes first on JUPYTER_PATH for this session,
    and runs inside the session use this server rather than start their own; set JF_COLD_KERNELS=1 to run every
    notebook on a fresh kernel as users of JupyterLab do (JupyterLab's tests always do)."""
    from jigsaw_forget.kernels import warm_kernels as warm
    with warm() as server: yield server
