"""One headless Chromium (Debian's `chromium` + `chromium-driver`, driven by Selenium) for every browser test of the
session: the docs site and JupyterLab. `make browser` installs it; without it these tests fail and say so."""
import json
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
    """Notebook kernels forked from one process that has done their imports (tests/warm_kernels.py): about 10 s of a core
    saved per notebook run. Its kernelspec `python3` goes first on JUPYTER_PATH for this session; set
    JF_COLD_KERNELS=1 to run every notebook on a fresh kernel as users do (JupyterLab's tests always do)."""
    import os, subprocess, sys
    if os.environ.get("JF_COLD_KERNELS"):
        yield None; return
    here = Path(__file__).with_name("warm_kernels.py")
    d = Path(tempfile.mkdtemp(prefix="warm-kernels-"))        # short: a Unix socket's path has at most 107 bytes
    sock = str(d / "sock")
    server = subprocess.Popen([sys.executable, str(here), "serve", sock], stdout=subprocess.DEVNULL, start_new_session=True)
    spec = d / "kernels/python3/kernel.json"
    spec.parent.mkdir(parents=True)
    spec.write_text(json.dumps({"argv": [sys.executable, str(here), "client", sock, "-f", "{connection_file}"],
                                "display_name": "Python 3 (ipykernel, warm)", "language": "python",
                                "metadata": {"debugger": True}}))
    old = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = os.pathsep.join([str(d), *([old] if old else [])])
    try: yield server
    finally:
        if old is None: os.environ.pop("JUPYTER_PATH", None)
        else: os.environ["JUPYTER_PATH"] = old
        server.kill(); server.wait()
        shutil.rmtree(d, ignore_errors=True)
