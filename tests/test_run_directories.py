"""Run directories and the results store under faults (issue #27, points 11-14): a run
directory deleted while it trains fails its run instead of marking it done; a kill between
a run's evaluation rows and its done marker leaves ``evals.jsonl`` itself with one row per
key and no cut line once the run is redone; a finished run missing its checkpoint or part
of its curve is named by the sweep, the report and the re-evaluation (whose count says
what it skipped); temporary directories of a killed report are removed by the next one,
a live one is left alone.

Every check reads the files directly (a line count, the done markers' own lists of keys),
not through the readers that hide duplicates.
"""

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import sweep_faults
from test_reliability import CONFIG, STEPS  # two seeds, 40 steps, inline, rows at 10-40

from experiments import sweep as sweep_cli
from toolkit import store
from toolkit.report import load_results
from toolkit.sweep import execute
from toolkit.sweep.reevaluation import reevaluate

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    root = tmp_path_factory.mktemp("run_directories")
    (root / "tiny.py").write_text(CONFIG)
    return SimpleNamespace(root=root, config=root / "tiny.py", cache=root / "cache")


def argv(space, results):
    return ["--config", str(space.config), "--results_dir", str(results), "--no_progress"]


def sweep_here(space, results, monkeypatch) -> tuple[int, str]:
    """The sweep command in this process; its exit code and the warnings it gave."""
    monkeypatch.setenv("TOOLKIT_CACHE_DIR", str(space.cache))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = sweep_cli.main(argv(space, results))
    return code, "\n".join(str(w.message) for w in caught)


def seed_of(run: store.RunDir) -> int:
    return json.loads(run.config.read_text())["train"]["seed"]


def runs_by_seed(experiment) -> list[store.RunDir]:
    return sorted(store.run_dirs(experiment), key=seed_of)


@pytest.fixture(scope="module")
def finished(space, tmp_path_factory):
    """A finished sweep (both runs done), made in this process."""
    results = tmp_path_factory.mktemp("finished")
    with pytest.MonkeyPatch.context() as monkeypatch:
        code, _ = sweep_here(space, results, monkeypatch)
    assert code == 0
    return results / "tiny"


def copy_of(experiment, tmp_path) -> Path:
    target = tmp_path / "results" / experiment.name
    shutil.copytree(experiment, target)
    return target


def file_keys(experiment) -> list[tuple]:
    """The key of every line of evals.jsonl, read as plain JSON (a cut line fails)."""
    lines = (experiment / store.EVALS).read_text().splitlines()
    return [store.row_key(json.loads(line)) for line in lines]


def marker_keys(experiment) -> set[tuple]:
    """The keys the done markers list: what the file must hold, once each (the runs' own
    rows: predictor "single")."""
    return {
        (run.run_id, *entry, "single")
        for run in store.run_dirs(experiment)
        for entry in json.loads(run.done.read_text())["evals"]
    }


# -- point 11: a run directory deleted while it trains ----------------------------------------


def test_a_run_directory_deleted_while_it_trains_fails_the_run_and_its_rerun_starts_afresh(
    space, tmp_path, monkeypatch
):
    results = tmp_path / "results"
    recorded = execute.Recorder.__call__
    deleted = []

    def delete_after_the_second_chunk(self, row, state, *, save):
        recorded(self, row, state, save=save)
        if not deleted and row is not None and row["step"] == 20:
            deleted.append(self.run_dir.run_id)
            shutil.rmtree(self.run_dir.path)

    monkeypatch.setattr(execute.Recorder, "__call__", delete_after_the_second_chunk)
    code, _ = sweep_here(space, results, monkeypatch)
    run = store.RunDir(results / "tiny", deleted[0])
    assert code == 1  # the sweep does not report success
    assert not run.is_done()
    error = json.loads(run.error.read_text())
    assert "config.json" in error["message"] and "deleted" in error["message"]
    assert not (results / "tiny" / store.EVALS).exists() or run.run_id not in {
        key[0] for key in file_keys(results / "tiny")
    }
    (other,) = [r for r in store.run_dirs(results / "tiny") if r.run_id != run.run_id]
    assert other.is_done()  # the other run goes on

    monkeypatch.setattr(execute.Recorder, "__call__", recorded)
    events = tmp_path / "events.jsonl"
    sweep_faults.log_starts(events, monkeypatch.setattr)
    code, _ = sweep_here(space, results, monkeypatch)
    assert code == 0
    assert [(e["run_id"], e["step"]) for e in store.read_jsonl(events)] == [(run.run_id, 0)]
    assert run.is_done() and run.config.is_file() and not run.error.exists()
    assert [row["step"] for row in run.read_metrics()] == STEPS


# -- point 12: a kill between a run's rows and its done marker ---------------------------------


@pytest.mark.parametrize("crash", ["evals_append:1", "after_evals:1"])
def test_a_kill_around_the_evals_append_leaves_one_row_per_key_in_the_file(
    crash, space, tmp_path, monkeypatch
):
    results, events = tmp_path / "results", tmp_path / "events.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TOOLKIT_CACHE_DIR": str(space.cache)}
    command = [sys.executable, sweep_faults.__file__, "--events", str(events), "--crash", crash]
    done = subprocess.run(
        [*command, "--", *argv(space, results)], cwd=ROOT, env=env, capture_output=True
    )
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]
    experiment = results / "tiny"
    assert not any(run.is_done() for run in store.run_dirs(experiment))
    assert (experiment / store.EVALS).stat().st_size > 0  # rows of the killed run are there

    code, _ = sweep_here(space, results, monkeypatch)
    assert code == 0
    keys = file_keys(experiment)  # every line parses: no cut line is left
    assert len(keys) == len(set(keys))  # one row per key in the file itself
    assert set(keys) == marker_keys(experiment)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn about on any read
        assert len(store.read_evals(experiment)) == len(keys)


def test_rows_of_a_run_recorded_anew_replace_its_old_ones_and_cut_lines(tmp_path):
    """The store's rule alone, on hand-made rows: a row replaces the row of its key (a run
    recorded anew, a re-evaluated set); rows of other keys stay in their order, including
    a run's rows that re-evaluation added and its new record does not list."""
    path = tmp_path / store.EVALS
    row = {"checkpoint": "final", "split": "test", "kind": "clean", "severity": 0}
    a = [row | {"run_id": "a", "eval_set": s, "accuracy": 0.1} for s in ("clean", "x")]
    b = [row | {"run_id": "b", "eval_set": s, "accuracy": 0.2} for s in ("clean", "x")]
    store.append_evals(tmp_path, a + b)
    with open(path, "ab") as handle:
        handle.write(b'{"run_id": "a", "checkpo')  # a killed writer's cut line
    new_a = [r | {"accuracy": 0.5} for r in a[:1]]
    store.append_evals(tmp_path, new_a)  # run a recorded anew: its clean row only
    assert [json.loads(x) for x in path.read_text().splitlines()] == [a[1], *b, *new_a]
    again_b = [b[1] | {"accuracy": 0.9}]
    store.append_evals(tmp_path, again_b)  # a re-evaluation: that key only
    expected = [a[1], b[0], *new_a, *again_b]
    assert [json.loads(x) for x in path.read_text().splitlines()] == expected
    mode = path.stat().st_mode & 0o777
    store.append_evals(tmp_path, [row | {"run_id": "c", "eval_set": "clean"}])  # plain append
    assert len(path.read_text().splitlines()) == 5 and path.stat().st_mode & 0o777 == mode


# -- point 13: a finished run missing its checkpoint or part of its curve ----------------------


def test_a_finished_run_missing_its_checkpoint_or_curve_is_named_by_sweep_report_evaluate(
    space, finished, tmp_path, monkeypatch
):
    experiment = copy_of(finished, tmp_path)
    no_checkpoint, cut_curve = runs_by_seed(experiment)
    shutil.rmtree(no_checkpoint.checkpoint)
    lines = cut_curve.metrics.read_text().splitlines(keepends=True)
    cut_curve.metrics.write_text("".join(lines[:2]))  # steps 10 and 20 of 40

    code, said = sweep_here(space, experiment.parent, monkeypatch)
    assert code == 0  # both runs are done; nothing is retrained
    assert f"{no_checkpoint.run_id} lacks its final checkpoint (step 40)" in said
    assert f"{cut_curve.run_id} lacks metrics.jsonl rows after step 20 (the run ends at 40)" in said

    with pytest.warns(store.ResultsWarning) as caught:
        load_results(experiment)
    said = "\n".join(str(w.message) for w in caught)
    assert f"{cut_curve.run_id} lacks metrics.jsonl rows after step 20" in said
    assert no_checkpoint.run_id not in said  # the report reads no checkpoint

    out, shuffle = io.StringIO(), {"type": "shifts", "names": ("shuffle",), "severities": (5,)}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        written = reevaluate(experiment, {"more": shuffle}, progress=False, out=out)
    said = "\n".join(str(w.message) for w in caught)
    assert f"{cut_curve.run_id} lacks metrics.jsonl rows after step 20" in said
    assert written == 8  # the other run's clean and shuffle rows, test/validation, final/best
    closing = out.getvalue().strip().splitlines()[-1]
    assert closing.endswith(
        f"wrote 8 rows for 1 runs; skipped 1 finished run(s): {no_checkpoint.run_id}: "
        "final checkpoint (step 40) missing or unreadable"
    )
    keys = file_keys(experiment)
    assert len(keys) == len(set(keys))  # the re-evaluated clean rows replaced the old ones


# -- point 14: temporary directories of a killed report ---------------------------------------

WRITER = """
import os, signal, sys, time
from pathlib import Path
from toolkit import store

target, mode, ready, go = sys.argv[1:]
real = os.replace

def replace(source, destination):
    if mode == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    Path(ready).touch()
    while not Path(go).exists():
        time.sleep(0.01)
    return real(source, destination)

os.replace = replace
store.replace_dir(target, {"README.md": mode.encode()})
"""


def test_a_killed_reports_temporary_directories_are_removed_by_the_next_a_live_ones_kept(
    tmp_path,
):
    report = tmp_path / "tiny" / "report"
    store.replace_dir(report, {"README.md": b"first"})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ready, go = tmp_path / "ready", tmp_path / "go"

    def writer(mode):
        command = [sys.executable, "-c", WRITER, str(report), mode, str(ready), str(go)]
        return subprocess.Popen(command, env=env, cwd=ROOT, stderr=subprocess.PIPE)

    def hidden():
        return sorted(p.name.rsplit("-", 1)[0] for p in report.parent.glob(".report.*"))

    live = writer("live")
    try:
        deadline = time.time() + 120
        while not ready.exists():
            assert live.poll() is None and time.time() < deadline, live.stderr.read()
            time.sleep(0.01)
        mine = set(report.parent.glob(".report.*"))
        assert len(mine) == 2  # the live writer's temporary and old directories
        killed = writer("kill")
        assert killed.wait(timeout=120) == -signal.SIGKILL
        stale = set(report.parent.glob(".report.*")) - mine
        assert sorted(p.name.rsplit("-", 1)[0] for p in stale) == [".report.old", ".report.tmp"]
        store.replace_dir(report, {"README.md": b"next"})
        assert set(report.parent.glob(".report.*")) == mine  # the stale ones are gone
        assert (report / "README.md").read_bytes() == b"next"
    finally:
        go.touch()
        assert live.wait(timeout=120) == 0, live.stderr.read()
    assert hidden() == [] and (report / "README.md").read_bytes() == b"live"
