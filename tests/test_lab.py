"""JupyterLab, as a user meets it: `make lab` starts Lab on the project's environment (headless here, on a free local
port with a token); an experiment notebook opened in Lab in a headless Chromium runs top to bottom through the Run
menu's "Run All Cells" on the `python3` kernel, with its defaults, and its table and figure appear.

Lab serves a scratch copy of the experiments (with the repo's pyproject.toml, so `resolve` roots runs there): Lab
saves and checkpoints what it opens, and the notebooks in nbs/ must stay clean."""
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "nbs/experiments/01_zero_shot.ipynb"     # the cheapest experiment: its defaults take an untrained micro model
SCREENS = ROOT / "runs/lab-screens"
# Every other experiment's defaults run in Lab in minutes on 2 CPU cores (measured under load: pretraining 5 min, prior
# evaluation 1.7 min), too long for CI. The smoke profile runs them (tests/test_smoke.py) through the runner, which runs
# a notebook from its own folder as Lab does, in order (the study's notebooks read each other's run folders), shrunk:
# its stages may set only these (counts, lengths, schedules, batch sizes, the analyses' grids) and the links between
# stages; every other parameter keeps its default. The difficulty knob's sweep is in no profile: it runs here, shrunk.
SIZES = {"n_train", "n_test", "prior_n", "steps", "mid_step", "save_steps", "restart_every_epochs", "track_every", "track_n",
         "eval_every", "eval_batch_size", "batch_size", "prompts_per_step", "num_generations", "n_prompts", "n_questions", "k",
         "n_u", "n_v", "n_check", "lrs", "benchmarks", "n_boot", "score_every", "n", "eval_n", "vocab_size", "vision_steps",
         "max_new_tokens", "keep_steps", "grpo_step", "curve_every", "curve_prior_n", "kl_prompts", "kl_k", "rounds",
         "steps_per_round", "hit_n", "hit_k", "levels"}
LINKS = {"run_dir", "figures_dir", "publish_to", "seed", "stage_dirs", "regimes"}   # publish_to: where a base is copied
SHRUNK = {"03_difficulty_knob": {"sft_steps": 1, "grpo_steps": 1, "n_test": 2, "eval_every": 1, "num_generations": 2, "prompts_per_step": 2}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, poll: float = 0.5):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if (value := predicate()): return value
        time.sleep(poll)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    "`make lab` on a scratch copy of the experiments: (base url, token, its root folder)."
    root = tmp_path_factory.mktemp("lab")
    shutil.copy(ROOT / "pyproject.toml", root)
    shutil.copytree(ROOT / "nbs/experiments", root / "nbs/experiments")
    settings = root.parent / f"{root.name}-settings"    # no news toasts, no autosave; every cell in the page (not windowed)
    for plugin, values in {"apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
                           "docmanager-extension/plugin": {"autosave": False},
                           "notebook-extension/tracker": {"windowingMode": "none"}}.items():
        f = settings / f"@jupyterlab/{plugin}.jupyterlab-settings"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(values))
    port, token = free_port(), os.urandom(12).hex()
    env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(settings), JUPYTERLAB_WORKSPACES_DIR=str(settings / "ws"),
               JUPYTER_RUNTIME_DIR=str(settings / "rt"), MAKEFLAGS="")
    # Lab as users meet it: its kernels are started cold, not by the suite's warm-kernel server (jigsaw_forget.kernels)
    env["JUPYTER_PATH"] = os.pathsep.join(p for p in env.get("JUPYTER_PATH", "").split(os.pathsep) if p and "jf-warm-" not in p)  # kernels.warm_kernels' folder
    args = f"--no-browser --ip=127.0.0.1 --port={port} --ServerApp.port_retries=0 --IdentityProvider.token={token}"
    log = open(root.parent / f"{root.name}-server.log", "w")
    proc = subprocess.Popen(["make", "-s", "-o", ".venv/.installed", "lab", f"LAB_ARGS={args}", f"LAB_DIR={root}"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def up():
        assert proc.poll() is None, f"make lab exited: {Path(log.name).read_text()[-2000:]}"
        try: return urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2).status == 200
        except OSError: return False
    try:
        wait_for(up, 90, "the Lab server")
        yield url, token, root
    finally:
        with contextlib.suppress(ProcessLookupError):   # the process group of the `make lab` started here
            os.killpg(proc.pid, signal.SIGTERM)
            try: proc.wait(20)
            except subprocess.TimeoutExpired: os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def api(url, token, path):
    return json.load(urllib.request.urlopen(f"{url}{path}?token={token}", timeout=10))


def test_lab_kernel_is_the_projects_python3(lab):
    url, token, _ = lab
    specs = api(url, token, "/api/kernelspecs")
    assert specs["default"] == "python3" and "python3" in specs["kernelspecs"]
    # ipykernel's own kernelspec in .venv: "python" there is the server's interpreter, the venv's (jupyter_client)
    assert specs["kernelspecs"]["python3"]["spec"]["argv"][0] in ("python", str(ROOT / ".venv/bin/python"))


CELLS_JS = """return [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell.jp-CodeCell')].map(c => ({
  prompt: (c.querySelector('.jp-InputPrompt') || {}).textContent || '',
  tables: c.querySelectorAll('.jp-OutputArea-output table').length,
  images: [...c.querySelectorAll('.jp-OutputArea-output img')].map(i => i.complete && i.naturalWidth > 0),
  errors: [...c.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
            .map(e => e.textContent).filter(t => /Traceback|Error:/.test(t))}))"""


def test_experiment_runs_top_to_bottom_in_lab(lab, browser):
    from selenium.webdriver.common.by import By
    url, token, root = lab
    browser.get(f"{url}/lab/tree/{NOTEBOOK}?token={token}")
    status = lambda: browser.execute_script(
        "const e = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator');"
        "return e && e.dataset.status")
    n_cells = sum(c["cell_type"] == "code" for c in json.loads((ROOT / NOTEBOOK).read_text())["cells"])
    # the kernel counts as ready once the page holds its websocket: before that, Lab's Run All skips every cell silently
    connected = lambda: [k for k in api(url, token, "/api/kernels") if k["connections"] and k["execution_state"] == "idle"]
    wait_for(lambda: status() == "idle" and connected() and len(browser.execute_script(CELLS_JS)) == n_cells, 120,
             f"the notebook's {n_cells} code cells and an idle python3 kernel connected to the page")

    menu = wait_for(lambda: [m for m in browser.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-item") if m.text == "Run"],
                    30, "the Run menu")[0]
    menu.click()
    item = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, 'li.lm-Menu-item[data-command="runmenu:run-all"]'),
                    10, "Run All Cells in the Run menu")[0]
    assert item.text.startswith("Run All Cells")
    item.click()

    def finished():
        cells = browser.execute_script(CELLS_JS)
        if any(c["errors"] for c in cells): return cells         # stop waiting: a cell failed
        return cells if status() == "idle" and all(c["prompt"].strip() not in ("[ ]:", "[*]:", "") for c in cells) else None
    SCREENS.mkdir(parents=True, exist_ok=True)
    try:
        wait_for(lambda: browser.execute_script(CELLS_JS)[0]["prompt"].strip() != "[ ]:", 30, "Run All to start")
        cells = wait_for(finished, 300, "Run All to finish", poll=1)
    except TimeoutError:
        browser.save_screenshot(str(SCREENS / "01_zero_shot-timeout.png"))
        raise TimeoutError(f"prompts: {[c['prompt'] for c in browser.execute_script(CELLS_JS)]}; kernel {status()}; "
                           f"screenshot in {SCREENS}") from None
    assert not [c["errors"] for c in cells if c["errors"]], "a cell raised"
    numbers = [int(c["prompt"].strip()[1:-2]) for c in cells]
    assert numbers == list(range(numbers[0], numbers[0] + n_cells)), f"every cell ran once, in order: {numbers}"
    assert sum(c["tables"] for c in cells) >= 2, "the summary and the answers tables appear"
    imgs = [ok for c in cells for ok in c["images"]]
    assert imgs and all(imgs), "the puzzle figure appears (and has loaded)"
    browser.save_screenshot(str(SCREENS / "01_zero_shot.png"))
    # what the notebook wrote, under the root Lab serves (its defaults: runs/manual/...)
    m = json.loads((root / "runs/manual/zero_shot/metrics.json").read_text())
    assert m["trained_base"] is False and m["n_test"] == 16 and 0 <= m["hit"] <= 1
    assert (root / "runs/manual/figures/zero_shot_examples.png").stat().st_size > 1000
    sessions = api(url, token, "/api/sessions")
    assert [s["kernel"]["name"] for s in sessions] == ["python3"]
    browser.get("about:blank")      # Lab's page polls its server: leave it before the server goes with this module


@pytest.mark.parametrize("name", sorted(SHRUNK))
def test_experiment_defaults_run(name, tmp_path):
    "Run from the notebook's own folder, as Lab runs it; results go to tmp_path instead of runs/manual/."
    import papermill as pm
    from jigsaw_forget.runner import load_metrics
    nb = ROOT / f"nbs/experiments/{name}.ipynb"
    params = dict(SHRUNK[name], run_dir=str(tmp_path / "run"), figures_dir=str(tmp_path / "figures"))
    pm.execute_notebook(str(nb), str(tmp_path / "out.ipynb"), parameters=params, cwd=str(nb.parent),
                        kernel_name="python3", progress_bar=False)
    assert load_metrics(tmp_path / "run")
    assert [p for p in (tmp_path / "figures").glob("*.png") if p.stat().st_size > 1000], "its figures were saved"


def test_the_smoke_profile_runs_every_experiment_with_its_defaults():
    "Each experiment but the two above has a smoke stage that changes only sizes and links: its run with its defaults."
    import ast
    import papermill as pm
    from jigsaw_forget.runner import load_profile
    study = {p.stem for p in (ROOT / "nbs/experiments").glob("*.ipynb")} - {Path(NOTEBOOK).stem, *SHRUNK}
    assert {"00_pretrain_base", "02_prior_eval", "10_sft_gt", "11_grpo", "12_sft_rollouts", "20_forgetting_table", "50_claims"} <= study
    others = {}                  # notebook -> per smoke stage running it, what it sets beyond sizes and links
    for st in load_profile("smoke")["stages"].values():
        declared = {k: ast.literal_eval(v["default"]) for k, v in pm.inspect_notebook(str(ROOT / st["notebook"])).items()}
        others.setdefault(Path(st["notebook"]).stem, []).append(
            {k: v for k, v in st["params"].items() if k not in SIZES | LINKS and not k.endswith("_dir") and declared[k] != v})
    assert study <= set(others), f"experiments the smoke profile does not run: {sorted(study - set(others))}"
    assert all({} in others[name] for name in study), f"smoke stages changing more than sizes and links: {others}"
