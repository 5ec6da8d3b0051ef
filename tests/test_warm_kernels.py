"""The suite's warm kernels (tests/warm_kernels.py): a notebook runs in a forked kernel of its own, with the loaded
modules but the caller's environment and folder; with the server failed, the kernel starts cold, at once."""
import json
import os
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

HERE = Path(__file__).parent
PROBE = "import os, sys, json; print(json.dumps(dict(torch='torch' in sys.modules, cwd=os.getcwd(), probe=os.environ.get('JF_PROBE'), pid=os.getpid())))"


def run_probe(cwd):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(PROBE)])
    NotebookClient(nb, kernel_name="python3", timeout=180, resources={"metadata": {"path": str(cwd)}}).execute()
    return json.loads(nb.cells[0].outputs[0]["text"])


def test_a_warm_kernel_has_the_imports_and_the_callers_folder_and_environment(warm_kernels, tmp_path, monkeypatch):
    if warm_kernels is None: pytest.skip("JF_COLD_KERNELS is set")
    monkeypatch.setenv("JF_PROBE", "here")
    a, b = run_probe(tmp_path), run_probe(HERE)
    assert a["torch"] and a["cwd"] == str(tmp_path) and a["probe"] == "here"
    assert b["cwd"] == str(HERE) and a["pid"] != b["pid"]                  # a kernel of its own each time


def test_a_failed_server_means_a_cold_kernel(tmp_path, monkeypatch):
    sock = tmp_path / "sock"
    (tmp_path / "sock.failed").touch()
    spec = tmp_path / "kernels/python3/kernel.json"
    spec.parent.mkdir(parents=True)
    spec.write_text(json.dumps({"argv": [sys.executable, str(HERE / "warm_kernels.py"), "client", str(sock), "-f", "{connection_file}"],
                                "display_name": "Python 3", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    out = run_probe(tmp_path)
    assert not out["torch"] and out["cwd"] == str(tmp_path)
