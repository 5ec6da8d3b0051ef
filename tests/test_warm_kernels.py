"""Warm kernels (`jigsaw_forget.kernels`, the runner's and the suite's): a notebook runs in a forked kernel of its own,
with the loaded modules but the caller's environment, folder and thread count; it computes what a cold kernel computes;
with the server failed, the kernel starts cold, at once."""
import json
import os
import sys
from pathlib import Path

import nbformat
import papermill as pm
import pytest
from nbclient import NotebookClient
from safetensors.torch import load_file

from jigsaw_forget.kernels import kernel_spec

HERE = Path(__file__).parent
ROOT = HERE.parent
PROBE = ("import os, sys, json; print(json.dumps(dict(torch='torch' in sys.modules, cwd=os.getcwd(), probe=os.environ.get('JF_PROBE'), "
         "pid=os.getpid(), threads=sys.modules['torch'].get_num_threads() if 'torch' in sys.modules else None)))")


def run_probe(cwd):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(PROBE)])
    NotebookClient(nb, kernel_name="python3", timeout=180, resources={"metadata": {"path": str(cwd)}}).execute()
    return json.loads(nb.cells[0].outputs[0]["text"])


def cold_kernels(tmp_path, monkeypatch):
    "A plain `python3` kernelspec first on JUPYTER_PATH: fresh kernels, as JupyterLab starts them."
    spec = tmp_path / "cold-kernels/kernels/python3/kernel.json"
    spec.parent.mkdir(parents=True)
    spec.write_text(json.dumps({"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                                "display_name": "Python 3", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "cold-kernels"))


def test_a_warm_kernel_has_the_imports_and_the_callers_folder_environment_and_threads(warm_kernels, tmp_path, monkeypatch):
    if warm_kernels is None: pytest.skip("JF_COLD_KERNELS is set")
    monkeypatch.setenv("JF_PROBE", "here")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")            # as a lane gives its kernels; the server imported torch with its own
    a, b = run_probe(tmp_path), run_probe(HERE)
    assert a["torch"] and a["cwd"] == str(tmp_path) and a["probe"] == "here"
    assert b["cwd"] == str(HERE) and a["pid"] != b["pid"]                  # a kernel of its own each time
    assert a["threads"] == 1


def test_a_failed_server_means_a_cold_kernel(tmp_path, monkeypatch):
    sock = tmp_path / "sock"
    (tmp_path / "sock.failed").touch()
    kernel_spec(tmp_path, str(sock))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    out = run_probe(tmp_path)
    assert not out["torch"] and out["cwd"] == str(tmp_path)


def _numbers(x):
    "A stage's metrics without what only the clock decides (durations, times, dates)."
    if isinstance(x, dict):
        return {k: _numbers(v) for k, v in x.items() if not any(w in k for w in ("second", "time", "_at", "duration"))}
    if isinstance(x, list): return [_numbers(v) for v in x]
    return x


@pytest.mark.slow
def test_a_stage_computes_the_same_numbers_warm_and_cold(warm_kernels, tmp_path, monkeypatch):
    """SFT of the committed jigsaw base, 2 steps at lr 1e-3 (so the weights move), in a warm kernel and in a cold one, on
    one thread each as a lane gives them (the server imported torch with two here): this model's sums differ in their
    last bits between 1 and 2 threads, so a kernel left on the server's thread count computes other numbers."""
    if warm_kernels is None: pytest.skip("JF_COLD_KERNELS is set")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    params = dict(run_dir=str(tmp_path / "sft"), figures_dir=str(tmp_path / "fig"), base_dir="bases/tiny/model", seeds=[0],
                  n_train=8, n_test=2, prior_n=2, steps=2, batch_size=4, lr=1e-3, eval_batch_size=8)

    def run(name):
        pm.execute_notebook(str(ROOT / "nbs/experiments/10_sft_gt.ipynb"), str(tmp_path / f"{name}.ipynb"), parameters=params,
                            cwd=str(ROOT), progress_bar=False, kernel_name="python3")
        out = tmp_path / name
        (tmp_path / "sft").rename(out)
        return out

    warm = run("warm")
    cold_kernels(tmp_path, monkeypatch)
    cold = run("cold")
    w, c = load_file(warm / "seed0/model/model.safetensors"), load_file(cold / "seed0/model/model.safetensors")
    base = load_file(ROOT / "bases/tiny/model/model.safetensors")
    assert any(not (w[k] == base[k]).all() for k in base), "the model did not move: the comparison would be empty"
    assert w.keys() == c.keys() and all((w[k] == c[k]).all() for k in w), "warm and cold kernels trained different weights"
    for f in sorted(p.relative_to(warm) for p in warm.rglob("*.json")):
        assert _numbers(json.loads((warm / f).read_text())) == _numbers(json.loads((cold / f).read_text())), f
    assert sorted(p.relative_to(warm) for p in warm.rglob("*.json")) == sorted(p.relative_to(cold) for p in cold.rglob("*.json"))


@pytest.mark.slow
def test_the_runner_starts_its_own_warm_kernels_with_the_lanes_threads(tmp_path, monkeypatch):
    "Outside the suite's server (as `make reproduce` runs): the runner's own server feeds both lanes, then is gone."
    from jigsaw_forget.runner import load_metrics, run_profile
    from jigsaw_forget.kernels import SERVER_ENV
    monkeypatch.delenv(SERVER_ENV, raising=False)
    monkeypatch.delenv("JF_COLD_KERNELS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = os.environ.get("JUPYTER_PATH")
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell('run_dir: str = "runs/scratch"\nupstream: str = ""', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("import os, sys\nfrom jigsaw_forget.runner import save_metrics\n"
                                  "save_metrics(run_dir, dict(torch='torch' in sys.modules, pid=os.getpid(),\n"
                                  "    threads=sys.modules['torch'].get_num_threads() if 'torch' in sys.modules else None))")],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nbformat.write(nb, tmp_path / "probe.ipynb")
    (tmp_path / "p.yaml").write_text(f"stages:\n  a: {{notebook: {tmp_path / 'probe.ipynb'}}}\n"
                                     f"  b: {{notebook: {tmp_path / 'probe.ipynb'}}}\n")
    lines = []
    run_profile(tmp_path / "p.yaml", runs_root=tmp_path / "runs", jobs=2, log=lines.append, progress_bar=False)
    a, b = (load_metrics(tmp_path / f"runs/p/{s}") for s in "ab")
    assert lines[0].startswith("kernels: warm")
    assert a["torch"] and b["torch"] and a["pid"] != b["pid"]          # forked with the imports done, a kernel each
    assert a["threads"] == b["threads"] == max(1, (os.cpu_count() or 1) // 2)
    assert os.environ.get("JUPYTER_PATH") == before and SERVER_ENV not in os.environ   # the run's server is gone with it
