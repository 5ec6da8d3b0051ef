"""Runner: paths, atomic metrics, profile validation, the papermill DAG (resume, overrides, --force, --only, failures) and the CLI.

Stage executions use the tiny notebooks in tests/fixtures/runner (they only write metrics.json); each costs a kernel
start (~1-2 s), so the end-to-end tests reuse one runs folder for several steps.
"""
import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from jigsaw_forget.runner import (ConfigError, StageFailed, load_metrics, main, plan_profile, profile_status, project_root,
                                  resolve, run_profile, save_metrics, write_json_atomic)

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests/fixtures/runner"
CHAIN = FIX / "chain.yaml"
STAGE_NB = "tests/fixtures/runner/stage.ipynb"


def statuses(results):
    return {r["stage"]: r["status"] for r in results}


def write_profile(path, stages, params=None):
    path.write_text(yaml.safe_dump({"description": "test", "params": params or {}, "stages": stages}, sort_keys=False))
    return path


# --- paths and metrics -------------------------------------------------------------------------------------------

def test_resolve_is_independent_of_cwd(monkeypatch, tmp_path):
    for cwd in (ROOT, ROOT / "nbs", tmp_path):
        monkeypatch.chdir(cwd)
        assert project_root() == ROOT
        assert resolve("runs/tiny/a") == ROOT / "runs/tiny/a"
        assert resolve(tmp_path / "x") == tmp_path / "x"


def test_project_root_prefers_the_project_above_the_cwd(monkeypatch, tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.nbdev]\nlib_path = "jigsaw_forget"\n')
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    assert project_root() == tmp_path
    (tmp_path / "pyproject.toml").write_text('[tool.nbdev]\nlib_path = "other_lib"\n')
    assert project_root() == ROOT  # not ours: falls back to the package's own checkout


def test_write_json_atomic(tmp_path):
    target = tmp_path / "deep/er/m.json"
    write_json_atomic(target, {"a": np.float32(0.5), "b": np.arange(3), "p": tmp_path, "n": np.int64(2), "ok": np.bool_(True)})
    assert json.loads(target.read_text()) == {"a": 0.5, "b": [0, 1, 2], "p": tmp_path.as_posix(), "n": 2, "ok": True}
    with pytest.raises(TypeError):
        write_json_atomic(target, {"x": object()})
    assert json.loads(target.read_text())["n"] == 2  # old content intact
    assert sorted(p.name for p in target.parent.iterdir()) == ["m.json"]  # no temp files left
    assert load_metrics(tmp_path / "nowhere") is None
    save_metrics(tmp_path / "s", {"acc": np.float64(0.25)})
    assert load_metrics(tmp_path / "s") == {"acc": 0.25}


# --- profile validation (no execution) ---------------------------------------------------------------------------

def test_plan_order_placeholders_and_overrides(tmp_path):
    plan = plan_profile(CHAIN, runs_root=tmp_path)
    assert [s.name for s in plan] == ["a", "b", "c"]  # b needs a; ties keep file order
    b = plan[1]
    assert b.params == {"value": 2, "upstream": f"{tmp_path.as_posix()}/chain/a", "run_dir": f"{tmp_path.as_posix()}/chain/b"}
    assert b.needs == {"a": plan[0].param_hash}
    rel = plan_profile(CHAIN)  # default runs root stays relative: no machine paths in hashes
    assert rel[0].params["run_dir"] == "runs/chain/a" and rel[0].run_dir == ROOT / "runs/chain/a"
    over = plan_profile(CHAIN, runs_root=tmp_path, overrides={"value": 7, "c.value": 9})
    assert [s.params["value"] for s in over] == [7, 7, 9]  # global override beats stage yaml; stage override beats both
    assert over[1].param_hash != plan[1].param_hash and over[2].param_hash != plan[2].param_hash


@pytest.mark.parametrize("stages,params,overrides,match", [
    ({"a": {"notebook": STAGE_NB, "params": {"valeu": 3}}}, {}, None,
     r"stage 'a': unknown parameter 'valeu' \(did you mean 'value'\?\) — notebook tests/fixtures/runner/stage.ipynb "
     r"declares: fail, run_dir, upstream, value, write_metrics"),
    ({"a": {"notebook": STAGE_NB, "needs": ["zz"]}}, {}, None, r"stage 'a' needs unknown stage 'zz'"),
    ({"a": {"notebook": STAGE_NB, "needs": ["b"]}, "b": {"notebook": STAGE_NB, "needs": ["a"]}}, {}, None,
     r"dependency cycle among stages: a -> b -> a"),
    ({"a": {"notebook": "tests/fixtures/runner/missing.ipynb"}}, {}, None, r"stage 'a': notebook not found: .*missing.ipynb"),
    ({"a": {"notebook": "tests/fixtures/runner/no_params.ipynb"}}, {}, None, r"no_params.ipynb has no cell tagged 'parameters'"),
    ({"a": {"notebook": "tests/fixtures/runner/no_run_dir.ipynb"}}, {}, None, r"stage 'a': .*does not declare 'run_dir'"),
    ({"a": {"notebook": STAGE_NB}}, {"sed": 0}, None, r"profile parameter 'sed': no stage notebook declares it"),
    ({"a": {"notebook": STAGE_NB, "params": {"run_dir": "x"}}}, {}, None, r"'run_dir' is set by the runner"),
    ({"a": {"notebook": STAGE_NB, "need": ["b"]}}, {}, None, r"stage 'a': unknown key\(s\) need"),
    ({"a": {"notebook": STAGE_NB}}, {}, {"a.nope": 1}, r"stage 'a': unknown parameter 'nope' \(override\)"),
    ({"a": {"notebook": STAGE_NB}}, {}, {"zz.value": 1}, r"override 'zz.value': unknown stage 'zz'"),
    ({"a": {"notebook": STAGE_NB}}, {}, {"nope": 1}, r"override 'nope': no stage notebook declares it"),
])
def test_config_errors_name_the_culprit(tmp_path, stages, params, overrides, match):
    prof = write_profile(tmp_path / "bad.yaml", stages, params)
    with pytest.raises(ConfigError, match=match):
        run_profile(prof, runs_root=tmp_path / "runs", overrides=overrides, dry_run=True, log=lambda s: None)
    assert not (tmp_path / "runs").exists()


def test_unknown_profile_and_only(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown profile 'no-such-profile' — available in .*configs"):
        run_profile("no-such-profile")
    with pytest.raises(ConfigError, match=r"profile file not found: .*nope.yaml"):
        run_profile(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=r"unknown --only stage\(s\): zz — stages: a, b, c"):
        run_profile(CHAIN, only=["zz"], runs_root=tmp_path, log=lambda s: None)
    with pytest.raises(ConfigError, match=r"needed stage\(s\) not done: a"):
        run_profile(CHAIN, only=["b"], runs_root=tmp_path, log=lambda s: None)


def test_dry_run_executes_nothing(tmp_path):
    lines = []
    res = run_profile(CHAIN, runs_root=tmp_path, dry_run=True, log=lines.append)
    assert statuses(res) == {"a": "would run", "b": "would run", "c": "would run"}
    assert lines[0].startswith("[1/3] a — would run") and any("upstream = " in l for l in lines)
    assert not any(tmp_path.iterdir())


# --- execution ---------------------------------------------------------------------------------------------------

def test_run_resume_change_force_only(tmp_path):
    runs, lines = tmp_path / "runs", []
    res = run_profile(CHAIN, runs_root=runs, log=lines.append)
    assert [r["stage"] for r in res] == ["a", "b", "c"] and set(statuses(res).values()) == {"ran"}
    assert lines[0] == "kernels: warm, forked from one process with the imports done (JF_COLD_KERNELS=1 for cold)" or \
        os.environ.get("JF_COLD_KERNELS")                  # said once, before the first stage that runs
    assert lines[1:3] == ["[1/3] a — running (not run yet): tests/fixtures/runner/stage.ipynb", lines[2]]
    assert lines[2].startswith("[1/3] a — done in ") and lines[2].endswith(" s")
    m = {s: load_metrics(runs / "chain" / s) for s in "abc"}
    assert [m[s]["value"] for s in "abc"] == [1, 2, 3]  # global param, stage param
    assert m["b"]["upstream_value"] == 1  # b read what a wrote, through the {runs} placeholder
    assert m["a"]["cwd"] == str(FIX)  # papermill ran from the notebook's own folder, as JupyterLab does
    st = m["b"]["_stage"]
    assert st["needs"] == {"a": m["a"]["_stage"]["param_hash"]} and st["profile"] == "chain"
    assert st["params"]["run_dir"] == f"{runs.as_posix()}/chain/b" and st["seconds"] > 0 and st["finished_at"]
    assert (runs / "chain/b/stage.ipynb").is_file()  # executed copy

    # re-run: all done
    lines.clear()
    assert set(statuses(run_profile(CHAIN, runs_root=runs, log=lines.append)).values()) == {"skipped"}
    assert lines[0] == "[1/3] a — skipped (done, params unchanged)"          # nothing to run: no kernels started, none said

    # change b: b re-runs, a and c do not
    res = run_profile(CHAIN, runs_root=runs, overrides={"b.value": 20}, log=lines.append)
    assert statuses(res) == {"a": "skipped", "b": "ran", "c": "skipped"}
    assert load_metrics(runs / "chain/b")["value"] == 20

    # change a: a and its dependent b re-run (b with its yaml value again), c does not
    res = run_profile(CHAIN, runs_root=runs, overrides={"a.value": 10}, log=lines.append)
    assert statuses(res) == {"a": "ran", "b": "ran", "c": "skipped"}
    assert load_metrics(runs / "chain/b")["upstream_value"] == 10
    states = {r["stage"]: r["state"] for r in profile_status(CHAIN, runs_root=runs)}
    assert states == {"a": "stale", "b": "stale", "c": "done"}  # the yaml's own params now differ from what ran

    # --force with --only: just c, even though it is done
    finished = load_metrics(runs / "chain/a")["_stage"]["finished_at"]
    res = run_profile(CHAIN, runs_root=runs, overrides={"a.value": 10}, force=True, only=["c"], log=lines.append)
    assert statuses(res) == {"c": "ran"}
    assert load_metrics(runs / "chain/a")["_stage"]["finished_at"] == finished

    # --only b: its need a is done (with these params), so b alone runs
    res = run_profile(CHAIN, runs_root=runs, overrides={"a.value": 10, "b.value": 5}, only=["b"], log=lines.append)
    assert statuses(res) == {"b": "ran"}
    # ... but with the yaml's params a is not done: --only b refuses
    with pytest.raises(ConfigError, match=r"--only b: needed stage\(s\) not done: a"):
        run_profile(CHAIN, runs_root=runs, only=["b"], log=lines.append)



# --- lanes: the seed parts of one stage at once ----------------------------------------------------------------------

def seeded_stage(tmp_path, seeds):
    "A stage whose notebook resumes seed by seed (its notebook is never run: papermill is replaced in these tests)."
    from jigsaw_forget.runner import Stage
    nb = tmp_path / "seeded.ipynb"
    nb.write_text("{}")
    return Stage(name="train", profile="p", notebook=str(nb), needs={}, param_hash="0123456789abcdef",
                 params={"run_dir": str(tmp_path / "runs/p/train"), "seeds": list(seeds)}, seeds_resume=True)


def test_seed_parts_started_at_once_leave_the_stage_metrics_alone(tmp_path, monkeypatch):
    """Many parts of one done stage start at the same instant, again and again: none fails and none touches the stage's
    metrics.json. (Parts that each moved it aside raced: two saw it, the second rename failed, FileNotFoundError.)"""
    import threading
    import papermill
    from jigsaw_forget.runner import execute_stage, seed_parts
    n, rounds = 8, 25
    stage = seeded_stage(tmp_path, range(n))
    parts = seed_parts(stage)
    assert len(parts) == n and all(p.run_dir == stage.run_dir for p in parts)
    inside = threading.Barrier(n, timeout=10)  # every part's notebook runs while all the others' do
    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: inside.wait())
    for r in range(rounds):
        inside.reset()
        save_metrics(stage.run_dir, {"round": r, "_stage": {"param_hash": stage.param_hash}})
        before = stage.metrics_path.read_bytes()
        start, errors = threading.Barrier(n), []

        def part(p):
            start.wait()  # all at once, straight into execute_stage
            try: execute_stage(p, progress_bar=False)
            except BaseException as e: errors.append(f"{p.part}: {type(e).__name__}: {e}")

        threads = [threading.Thread(target=part, args=(p,)) for p in parts]
        for t in threads: t.start()
        for t in threads: t.join(60)
        assert not errors, f"round {r}: {errors}"
        assert stage.metrics_path.is_file() and stage.metrics_path.read_bytes() == before, f"round {r}: a part moved metrics.json"
        assert not (stage.run_dir / "metrics.stale.json").exists(), f"round {r}: a part marked the stage stale"


def test_lanes_mark_a_done_stage_stale_before_its_parts_and_done_after(tmp_path, monkeypatch):
    """`run_lanes` over a done stage (worker processes replaced by threads, papermill by a stand-in that records what
    each part sees): metrics.json is moved aside once, before any part starts, and the whole run marks the stage done."""
    import concurrent.futures as cf
    import threading
    import papermill
    from jigsaw_forget.runner import run_lanes, stage_state

    class Threads(cf.ThreadPoolExecutor):  # same calls as the lanes' process pool; no initializer (it sets this env)
        def __init__(self, max_workers, mp_context=None, initializer=None, initargs=()): super().__init__(max_workers)

    stage, seen, lock = seeded_stage(tmp_path, range(4)), [], threading.Lock()
    parts_meet = threading.Barrier(4, timeout=10)

    def notebook(nb, out, parameters, **kw):
        with lock: seen.append((Path(out).name, stage_state(stage)))
        if len(parameters["seeds"]) == 1: parts_meet.wait()  # a part: the four run at once
        else: save_metrics(parameters["run_dir"], {"seeds": parameters["seeds"]})

    monkeypatch.setattr(cf, "ProcessPoolExecutor", Threads)
    monkeypatch.setattr(papermill, "execute_notebook", notebook)
    save_metrics(stage.run_dir, {"seeds": [0, 1, 2, 3], "_stage": {"param_hash": stage.param_hash}})
    assert stage_state(stage) == "done"
    lines = []
    res = run_lanes([stage], jobs=4, log=lines.append)
    assert res["train"]["status"] == "ran", lines
    assert sorted(seen[:4]) == [(f"seeded.seed{s}.ipynb", "stale") for s in range(4)]  # the parts: stage already stale
    assert seen[4:] == [("seeded.ipynb", "stale")] and stage_state(stage) == "done"   # then the whole run marks it done
    m = load_metrics(stage.run_dir)
    assert sorted(m["_stage"]["parts_seconds"]) == ["seed0", "seed1", "seed2", "seed3"]
    assert not (stage.run_dir / "metrics.stale.json").exists()


def test_failures_and_cli(tmp_path, capsys):
    runs = tmp_path / "runs"
    prof = write_profile(tmp_path / "two.yaml", {
        "a": {"notebook": STAGE_NB},
        "b": {"notebook": STAGE_NB, "needs": ["a"], "params": {"upstream": "{runs}/a"}}})
    base = ["--profile", str(prof), "--runs-root", str(runs)]
    assert main(["run", *base]) == 0
    out = capsys.readouterr().out
    assert "[2/2] b — done in" in out and "2 stage(s): 2 ran" in out
    a_before = (runs / "two/a/metrics.json").read_bytes()

    # a failing stage: StageFailed names the stage, the error and the executed notebook; b is no longer marked done
    with pytest.raises(StageFailed) as ei:
        run_profile(prof, runs_root=runs, overrides={"b.fail": True}, log=lambda s: None)
    msg = str(ei.value)
    assert "stage 'b' failed: RuntimeError: planned failure (value=1)" in msg and str(runs / "two/b/stage.ipynb") in msg
    assert ei.value.stage == "b" and ei.value.notebook.is_file() and [r["stage"] for r in ei.value.results] == ["a"]
    assert (runs / "two/a/metrics.json").read_bytes() == a_before  # earlier stage untouched
    assert not (runs / "two/b/metrics.json").exists() and (runs / "two/b/metrics.stale.json").exists()
    assert {r["stage"]: r["state"] for r in profile_status(prof, runs_root=runs)} == {"a": "done", "b": "stale"}

    # a stage that finishes without metrics.json, through the CLI: exit 1, one error line, no traceback
    assert main(["run", *base, "--set", "b.write_metrics=false"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: stage 'b' finished but wrote no metrics.json") and "Traceback" not in err
    assert err.count("\n") == 1

    # configuration errors exit 2
    assert main(["run", *base, "--set", "b.valeu=3"]) == 2
    assert capsys.readouterr().err.startswith("error: stage 'b': unknown parameter 'valeu'")
    assert main(["run", "--profile", "no-such-profile"]) == 2
    assert "unknown profile 'no-such-profile'" in capsys.readouterr().err
    assert main(["run", *base, "--set", "nonsense"]) == 2
    assert main(["run", *base, "--only", "zz"]) == 2
    assert "unknown --only stage(s): zz" in capsys.readouterr().err

    # status and dry run (b is stale: its metrics were moved aside)
    assert main(["status", *base]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["STAGE", "STATE", "SECONDS", "METRICS"]
    assert out[1].split()[:2] == ["a", "done"] and out[2].split()[:2] == ["b", "stale"]
    assert main(["run", *base, "--dry-run", "--set", "upstream={runs}/elsewhere"]) == 0
    out = capsys.readouterr().out
    assert "[1/2] a — would run" in out and f'upstream = "{runs.as_posix()}/two/elsewhere"' in out


def test_cli_profiles_lists_descriptions(monkeypatch, tmp_path, capsys):
    (tmp_path / "pyproject.toml").write_text('[tool.nbdev]\nlib_path = "jigsaw_forget"\n')
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs/smoke.yaml").write_text('description: "CI smoke run"\nstages: {}\n')
    (tmp_path / "configs/tiny.yaml").write_text('description: "default main job"\nstages: {}\n')
    monkeypatch.chdir(tmp_path)
    assert main(["profiles"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split(None, 1) == ["smoke", "CI smoke run"] and out[1].split(None, 1) == ["tiny", "default main job"]
    assert main(["run", "--profile", "nope"]) == 2
    assert "available in" in (err := capsys.readouterr().err) and "smoke, tiny" in err


@pytest.mark.parametrize("profile", sorted(p.stem for p in (ROOT / "configs").glob("*.yaml")) or ["(none yet)"])
def test_repo_profiles_are_valid(profile):
    "Every configs/*.yaml plans cleanly: notebooks exist, parameters are declared, needs form a DAG (nothing runs)."
    if profile == "(none yet)":
        pytest.skip("no profiles in configs/ yet")
    plan = plan_profile(profile)
    assert plan and all(s.params["run_dir"] == f"runs/{profile}/{s.name}" for s in plan)


# --- typed parameters ----------------------------------------------------------------------------------------------

def cli(*args, cwd=ROOT):
    "The installed `jigsaw-forget` command, as a user runs it."
    import subprocess, sys
    exe = Path(sys.executable).parent / "jigsaw-forget"
    return subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_cli_refuses_a_wrongly_typed_override_before_any_stage(tmp_path):
    "The issue's example: `--set zero_shot.n_test=abc` on the tiny profile used to start the notebook and fail inside."
    r = cli("run", "--profile", "tiny", "--runs-root", str(tmp_path / "runs"), "--set", "zero_shot.n_test=abc")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == ("error: stage 'zero_shot': parameter 'n_test' is declared int in "
                                'nbs/experiments/01_zero_shot.ipynb, got "abc" (str) from --set zero_shot.n_test')
    assert "running" not in r.stdout and not (tmp_path / "runs").exists()  # nothing ran, not even pretrain_base


@pytest.mark.parametrize("stage_params,overrides,match", [
    ({"value": "two"}, [], r"stage 'b': parameter 'value' is declared int in tests/fixtures/runner/stage.ipynb, "
                           r"got \"two\" \(str\) from the profile's stage 'b'"),
    ({}, ["value=2.5"], r"stage 'a': parameter 'value' is declared int .*, got 2.5 \(float\) from --set value"),
    ({}, ["b.fail=yes please"], r"stage 'b': parameter 'fail' is declared bool .*, got \"yes please\" \(str\) from --set b.fail"),
    ({}, ["b.value=true"], r"parameter 'value' is declared int .*, got true \(bool\)"),          # a bool is not an int
    ({}, ["b.upstream="], r"parameter 'upstream' is declared str .*, got null \(NoneType\) from --set b.upstream "
                          r"\(for an empty string write ''\)"),
])
def test_typed_parameters_refused_with_the_culprit(tmp_path, capsys, stage_params, overrides, match):
    "Stage a is valid and comes first: a wrong value of b (or of any stage) must stop the run before a starts."
    import re
    prof = write_profile(tmp_path / "typed.yaml", {"a": {"notebook": STAGE_NB},
                                                   "b": {"notebook": STAGE_NB, "needs": ["a"], "params": stage_params}})
    args = ["run", "--profile", str(prof), "--runs-root", str(tmp_path / "runs")]
    for o in overrides: args += ["--set", o]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and re.search(match, err), err
    assert not (tmp_path / "runs").exists()


def test_typed_parameters_accepted(tmp_path):
    "An int where a float is declared; YAML 1.2 floats; a null where the default is None; untyped parameters unchecked."
    import nbformat
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        'run_dir: str = "runs/x"\nlr: float = 1e-4\nmodel_dir: str = None\nsuite: list = ["mini"]\nmix: dict = {}\n'
        'flag: bool = False\nanything = 3', metadata={"tags": ["parameters"]})])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "typed.ipynb")
    prof = write_profile(tmp_path / "p.yaml", {"s": {"notebook": str(tmp_path / "typed.ipynb")}},
                         {"lr": 3, "model_dir": None, "suite": ["a", "b"], "mix": {"a": 1}, "flag": True, "anything": "x"})
    assert plan_profile(prof, runs_root=tmp_path)[0].params["lr"] == 3
    assert plan_profile(prof, runs_root=tmp_path, overrides={"lr": 2e-5})[0].params["lr"] == 2e-5
    bad = write_profile(tmp_path / "q.yaml", {"s": {"notebook": str(tmp_path / "typed.ipynb")}}, {"lr": "fast"})
    with pytest.raises(ConfigError, match=r"parameter 'lr' is declared float .*got \"fast\" \(str\) from the profile's params"):
        plan_profile(bad, runs_root=tmp_path)


def test_every_experiment_parameter_declares_a_checked_type():
    "The type check only guards parameters that declare one: every experiment parameter must."
    from papermill import inspect_notebook
    from jigsaw_forget.runner import declared_type
    for nb in sorted((ROOT / "nbs/experiments").glob("*.ipynb")):
        for name, info in inspect_notebook(str(nb)).items():
            assert declared_type(info)[0], f"{nb.name}: parameter {name!r} has no checked type ({info['inferred_type_name']})"
