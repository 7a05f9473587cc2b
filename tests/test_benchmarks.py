"""The population, sweep-wall, shuffle, checkpoint and data-load benchmarks run end to end (tiny
settings, no timing checks); every committed benchmark report is listed with its command,
and the README's tables are what `python -m benchmarks.readme` copies from the reports;
and the mechanisms behind the sweep runner's CPU speed do what they claim: a worker's XLA
pool has one thread, runs are handed out so that workers start on different programs, and
a finished sweep's records add up to hand-computed totals.
"""

import json
import multiprocessing
import os
import re
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import jax
import pytest
from xla_threads import xla_pool_threads

from benchmarks import checkpoint, data_load, ood_cost, population, readme, shuffle, sweep_wall
from benchmarks.machine import header
from toolkit.sweep.execute import Task
from toolkit.sweep.executors import program_key, spread_programs
from toolkit.sweep.workers import (
    SINGLE_THREADED,
    init_worker,
    start_backend,
    worker_flags,
)


def table_rows(text: str, first_cell: str) -> list[list[str]]:
    rows = [line.strip("|").split("|") for line in text.splitlines() if line.startswith("|")]
    return [[c.strip() for c in row] for row in rows if row[0].strip() == first_cell]


@pytest.mark.slow  # five fresh JAX processes and one spawned worker
def test_population_benchmark_writes_both_tables(tmp_path, capsys):
    out = tmp_path / "population.md"
    population.main(["--models", "mlp", "--sizes", "2", "--steps", "20", "--sequential-runs",
                     "1", "--runner-runs", "2", "--runner-steps", "20", "--repeats", "1",
                     "--cache", "cold", "--workers", "1", "--out", str(out)])  # fmt: skip
    text = out.read_text()
    assert "Load average at start" in text and "Load average at end" in text
    assert "--sizes 2 --steps 20" in text  # the command that produced it
    pop, *runner = table_rows(text, "mlp")
    assert pop[:2] == ["mlp", "2"] and pop[9].endswith("(from 1)")
    assert [row[2] for row in runner] == ["one process, XLA on all cores", "runner CPU mode"]
    assert all(row[1] == "2 x 20" for row in runner)
    assert runner[0][4] == runner[0][6] == runner[0][8] == runner[0][10] == "1.00x"
    for cell in (*pop[2:4], *runner[0][3:11:2], *runner[1][3:11:2]):  # positive numbers
        assert float(cell.split()[0].replace(",", "")) > 0
    assert all(re.fullmatch(r"\d+\.\d\dx", cell) for cell in runner[1][4:12:2])
    assert "wrote" in capsys.readouterr().out


def test_population_report_is_rewritten_after_each_repeat(tmp_path, monkeypatch):
    """A run stopped by a time limit keeps the repeats it finished (fake measurements)."""
    out = tmp_path / "population.md"
    seen = []

    def fake_measure(args, variants):
        pop = {}
        for repeat, wall in enumerate((4.0, 2.0)):
            vmapped = {"walls": [wall], "compiles": [1.0], "steady": 300.0, "devices": "1 x gpu"}
            solo = {"walls": [wall / 4], "compiles": [0.5], "steady": 100.0, "devices": "1 x gpu"}
            pop.setdefault(("mlp", "vmapped", 2), []).append(vmapped)
            pop.setdefault(("mlp", "sequential", 1), []).append(solo)
            yield repeat + 1, pop, {}
            seen.append(out.read_text())

    monkeypatch.setattr(population, "_measure", fake_measure)
    population.main(["--skip", "runner", "--models", "mlp", "--sizes", "2", "--steps", "10",
                     "--sequential-runs", "1", "--repeats", "2", "--out", str(out)])  # fmt: skip
    first, final = seen[0], out.read_text()
    assert "Partial: 1 of 2 repeats done" in first and "Partial" not in final
    assert "JAX devices of the workers: 1 x gpu" in final
    # repeat 1: vmapped 2 x 10 steps in 4 s = 5/s; sequential 2 runs x 1 s = 2 s -> 10/s
    assert table_rows(first, "mlp")[0][2:5] == ["5", "10 (from 1)", "0.50x"]
    # medians of both repeats: vmapped 3 s (6.7/s); sequential 2 and 1 s -> 1.5 s (13.3/s)
    assert table_rows(final, "mlp")[0][2:5] == ["7", "13 (from 1)", "0.50x"]


def test_report_header_names_the_gpus_that_nvidia_smi_lists(tmp_path, monkeypatch):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\nprintf 'NVIDIA H200\\nNVIDIA H200\\nNVIDIA A100\\n'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert "- Accelerators: 2 x NVIDIA H200, 1 x NVIDIA A100\n" in header("t", ["x.py"])
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert "- Accelerators: none found (no working nvidia-smi)\n" in header("t", ["x.py"])


def test_shuffle_benchmark_checks_and_times_both_ways(tmp_path, monkeypatch):
    monkeypatch.setattr(shuffle, "CASES", (("tiny", 300, 10, 50),))
    out = tmp_path / "shuffle.md"
    shuffle.main(["--repeats", "1", "--chunks", "3", "--out", str(out)])
    (row,) = table_rows(out.read_text(), "tiny")
    # 10 steps x 50 = 500 examples of 300: epochs 0-1, or 0-2 when a chunk starts mid-epoch.
    assert row[:4] == ["tiny", "300", "10 x 50", "3"]
    assert all(float(cell) > 0 for cell in (*row[4:6], *row[7:9]))
    assert re.fullmatch(r"\d+\.\dx", row[6]) and re.fullmatch(r"\d+\.\dx", row[9])


def test_saves_by_chunks_counts_hand_computed_cases():
    assert checkpoint.saves_by_chunks(2000, 100, 5) == 4  # steps 500, 1000, 1500, 2000
    assert checkpoint.saves_by_chunks(2000, 50, 5) == 8  # the GRU's 50-step chunks
    assert checkpoint.saves_by_chunks(1050, 100, 5) == 3  # 500, 1000 and the end
    assert checkpoint.saves_by_chunks(200, 100, 5) == 1  # the end only


@pytest.mark.slow  # three short sweeps and a training run
def test_checkpoint_benchmark_times_both_schedules(tmp_path, monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", os.environ.get("XLA_FLAGS", ""))  # main() sets a worker's
    out = tmp_path / "checkpoint.md"
    checkpoint.main(["--models", "mlp", "--steps", "1000", "--runs", "1", "--rounds", "1",
                     "--saves", "2", "--train-steps", "200", "--out", str(out)])  # fmt: skip
    (row,) = table_rows(out.read_text(), "mlp")
    # 40 -> 100 -> 100 -> 10 with biases: 4,100 + 10,100 + 1,010 parameters.
    assert row[1] == "15,210"
    # Chunks of 1000 / 20 = 50 steps, a save every 5th: steps 250, 500, 750, 1000; by
    # default (a run under 60 s) the end only.
    assert row[9:] == ["4", "1"]
    assert all(float(cell.replace(",", "")) > 0 for cell in (*row[2:6], *row[6:8]))
    assert re.fullmatch(r"\d+\.\d\dx", row[8])
    with pytest.raises(SystemExit):
        checkpoint.main(["--runs", "0"])


@pytest.mark.slow  # eight fresh processes, most of them importing TFDS
def test_data_load_benchmark_checks_and_times_all_three_ways(tmp_path, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))  # digits prepared here
    out = tmp_path / "data_load.md"
    data_load.main(["--datasets", "digits", "--repeats", "1", "--out", str(out)])
    (row,) = table_rows(out.read_text(), "digits")
    # scikit-learn's 1,797 digits (1,437 + 360) of 8x8 pixels, kept as uint8 (115,008 bytes
    # of inputs, 7,188 of int32 labels, and the metadata) in two entries: the toolkit
    # dataset's and the TFDS name's.
    assert row[1:3] == ["1,797", "8x8x1"] and 0.24 <= float(row[3]) <= 0.26
    assert all(float(row[i]) > 0 for i in (4, 5, 6))
    saved = [float(row[4]) - float(row[i]) for i in (5, 6)]
    assert [float(row[i]) for i in (7, 8)] == pytest.approx(saved, abs=2e-3)
    with pytest.raises(SystemExit, match="--datasets takes mnist1d, digits, mnist5k"):
        data_load.main(["--datasets", "cifar10"])


def test_every_benchmark_report_is_listed_with_the_command_that_wrote_it():
    folder = Path(__file__).resolve().parents[1] / "results" / "benchmarks"
    index = (folder / "README.md").read_text()
    reports = [p for p in folder.rglob("*.md") if p.name != "README.md"]
    assert len(reports) >= 7 and (folder / "gpu" / "population.md") in reports
    for report in reports:
        name = report.relative_to(folder).as_posix()
        command = f"python -m benchmarks.{report.stem} "
        assert f"`{name}`" in index, f"{name} is not in results/benchmarks/README.md"
        assert command in index, f"results/benchmarks/README.md lacks `{command}...`"
        written = re.search(r"Command \(from the repository root\): `([^`]*)`", report.read_text())
        assert written, f"{name} does not name its command"
        assert written[1].startswith(command) and f"--out results/benchmarks/{name}" in written[1]
        assert f"`{written[1]}`" in index, f"the README's command for {name} is not the one it ran"


def test_benchmark_readme_is_what_benchmarks_readme_writes_from_the_reports():
    index = readme.README.read_text()
    assert index == readme.update(), (
        "results/benchmarks/README.md is stale: python -m benchmarks.readme"
    )
    # Each report's section heads one table whose cells are the report's own.
    for report in readme.FOLDER.rglob("*.md"):
        if report.name != "README.md":
            section = index.split(f"## `{report.relative_to(readme.FOLDER).as_posix()}`")[1]
            table = [
                line for line in section.split("\n## ")[0].splitlines() if line.startswith("|")
            ]
            cells = {c.strip() for line in table[2:] for c in line.strip("|").split("|")}
            assert cells <= set(re.split(r"\s*\|\s*", report.read_text()))


REPORT = """# A timing

- Machine: Test CPU, 2 logical CPUs (2 usable), 1.0 GiB RAM
- Accelerators: 1 x NVIDIA H200
- Date: 2026-01-01 00:00 UTC
- Command (from the repository root): `python -m benchmarks.{stem} --out x.md`

{table}
"""
VS_PYTORCH = """\
| model | steps | toolkit | jax jit loop | toolkit @ abc1 | torch 1 thread | torch 2 threads \
| toolkit / torch 1 thread | jax jit loop / torch 1 thread | toolkit / toolkit @ abc1 |
|---|---|---|---|---|---|---|---|---|---|
| mlp | 20 | 3,000 | 1,000 | 2,500 | 700 | 800 | 4.3x | 1.4x | 1.20x |"""
REPEATED = """\
| model | ratio | steps/s | ratio |
|---|---|---|---|
| cnn | 2.0x | 900 | 3.0x |"""


def test_benchmark_readme_keeps_the_headline_columns_and_names_machine_date_command(tmp_path):
    (tmp_path / "gpu").mkdir()
    (tmp_path / "gpu" / "other.md").write_text(REPORT.format(stem="other", table=REPEATED))
    (tmp_path / "vs_pytorch.md").write_text(REPORT.format(stem="vs_pytorch", table=VS_PYTORCH))
    readme_file = tmp_path / "README.md"
    readme_file.write_text(f"intro\n{readme.BEGIN}\nold\n{readme.END}\nend\n")
    text = readme.update(readme_file, tmp_path)
    assert text.startswith(f"intro\n{readme.BEGIN}\n") and text.endswith(f"{readme.END}\nend\n")
    vs, other = text.split("## `vs_pytorch.md`: A timing")[1].split("## `gpu/other.md`: A timing")
    assert "- Machine: Test CPU, 2 logical CPUs (2 usable), 1.0 GiB RAM; 1 x NVIDIA H200\n" in vs
    assert "- Date: 2026-01-01 00:00 UTC\n" in vs
    assert "- Command: `python -m benchmarks.vs_pytorch --out x.md`\n" in vs
    # vs_pytorch: its headline columns in the README's order, the baseline's included.
    assert (
        "| model | steps | toolkit | toolkit @ abc1 | jax jit loop | torch 1 thread | toolkit / "
        "torch 1 thread | jax jit loop / torch 1 thread | toolkit / toolkit @ abc1 |\n"
        "|---|---|---|---|---|---|---|---|---|\n"
        "| mlp | 20 | 3,000 | 2,500 | 1,000 | 700 | 4.3x | 1.4x | 1.20x |\n"
    ) in vs
    # A report without a section: its first table whole, repeated headers included.
    assert f"{REPEATED}\n\n{readme.END}" in other
    (tmp_path / "compile.md").write_text(REPORT.format(stem="compile", table=REPEATED))
    with pytest.raises(ValueError, match="no table of the compile report has the columns model, d"):
        readme.update(readme_file, tmp_path)


TINY_SWEEP = """
from toolkit.sweep.defaults import base_config
from toolkit.sweep.search import product


def get_config(variant=""):
    config = base_config("tiny_wall", dataset="mnist1d")
    config.dataset_kwargs = {"num_samples": 200}
    config.train.update(model="linear", steps=4, log_every=2, batch_size=20)
    config.executor = "inline"
    return config


def sweep(config):
    return product(seed=range(2))
"""


def fake_run(experiment, run_id, started, finished, wall, done=True):
    run = experiment / "runs" / run_id
    run.mkdir(parents=True)
    provenance = {"started": started, "finished": finished, "wall_time_s": wall}
    (run / "provenance.json").write_text(json.dumps(provenance))
    if done:
        (run / "done").write_text(json.dumps({"finished": finished, "diverged_step": None}))


def test_run_records_add_up_to_hand_computed_totals(tmp_path):
    fake_run(tmp_path, "a", "2026-01-01T10:00:00+00:00", "2026-01-01T10:00:30+00:00", 20.0)
    fake_run(tmp_path, "b", "2026-01-01T10:00:10+00:00", "2026-01-01T10:01:40+00:00", 75.5)
    fake_run(tmp_path, "c", "2026-01-01T10:01:00+00:00", "2026-01-01T10:01:05+00:00", 4.0, False)
    (tmp_path / "runs" / "d").mkdir()  # a run that never got as far as its provenance
    records = sweep_wall.run_records(tmp_path)
    # span 10:00:00 -> 10:01:40; run walls 30 + 90 + 5; loops 20 + 75.5 + 4.
    assert records == {"runs": 4, "done": 2, "span_s": 100.0, "run_wall_s": 125.0,
                       "loop_s": 99.5}  # fmt: skip
    with pytest.raises(FileNotFoundError, match="not a sweep's experiment directory"):
        sweep_wall.run_records(tmp_path / "runs")


@pytest.mark.slow  # two fresh sweep processes
def test_sweep_wall_benchmark_measures_and_reads_sweeps(tmp_path):
    config = tmp_path / "tiny.py"
    config.write_text(TINY_SWEEP)
    finished = tmp_path / "finished"
    fake_run(finished, "a", "2026-01-01T10:00:00+00:00", "2026-01-01T10:02:00+00:00", 100.0)
    out = tmp_path / "wall.md"
    sweep_wall.main(["--config", str(config), "--from", str(finished), "--out", str(out)])
    text = out.read_text()
    cold, warm = table_rows(text, str(config))
    assert (cold[1], warm[1]) == ("cold", "warm")
    for row in (cold, warm):
        assert row[3] == "2 / 2" and float(row[2]) > 0 and float(row[6]) > 0
    (read,) = table_rows(text, str(finished))
    assert read[1:] == ["as recorded", "n/a", "1 / 1", "120.0", "120.0", "100.0", "0.5"]
    with pytest.raises(SystemExit):
        sweep_wall.main(["--config", str(config), "--bogus"])


@pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs Linux and two usable CPUs (one CPU gives a one-thread pool anyway)",
)
def test_a_worker_runs_xla_on_one_thread_on_every_core():
    # Without the worker setup the pool has one thread per usable CPU (or per simulated
    # device); the forced device count is left out so that only the setup decides.
    context = multiprocessing.get_context("spawn")
    flags = worker_flags("")
    with ProcessPoolExecutor(1, mp_context=context, initializer=init_worker,
                             initargs=(flags,)) as pool:  # fmt: skip
        threads = pool.submit(xla_pool_threads).result()
        affinity = pool.submit(os.sched_getaffinity, 0).result()
        seen_flags = pool.submit(os.getenv, "XLA_FLAGS").result()
    assert threads == 1
    assert affinity == os.sched_getaffinity(0)  # the worker may still run on every core
    assert seen_flags == SINGLE_THREADED == "--xla_cpu_multi_thread_eigen=false"
    assert worker_flags("--xla_cpu_multi_thread_eigen=true") == "--xla_cpu_multi_thread_eigen=true"
    jax.devices()
    assert start_backend() is False  # this process's backend exists: too late to narrow it
    with pytest.raises(ValueError, match="threads must be a positive int, got 0"):
        start_backend(0)


def task(seed, **train):
    trial = {
        "experiment": "spread",
        "group": "g",
        "dataset": "mnist1d",
        "dataset_kwargs": {},
        "train": {"model": "mlp", "learning_rate": 0.01, "seed": seed, **train},
        "data_axes": {"label_noise": 0.0},
    }
    return Task("unused", trial, {})


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux's /proc")
def test_a_thread_ending_while_the_pool_is_counted_is_skipped(monkeypatch):
    jax.devices()  # this process's XLA pool threads exist
    # One snapshot of the thread names, read once: threads that start or end later (the
    # test runner's own) cannot change what the counter sees.
    names = {}
    for task in sorted(Path("/proc/self/task").iterdir()):
        try:
            names[task / "comm"] = open(task / "comm").read()
        except FileNotFoundError:  # ended while listed
            pass
    tasks = [path.parent for path in names]
    expected = sum(name.startswith("tf_XLAEigen") for name in list(names.values())[1:])
    assert expected >= 1

    def read_text(path, *args, **kwargs):  # the first listed thread ends meanwhile
        if path == tasks[0] / "comm":
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return names[path]

    monkeypatch.setattr(Path, "iterdir", lambda path: iter(tasks))
    monkeypatch.setattr(Path, "read_text", read_text)
    assert xla_pool_threads() == expected


def test_runs_are_spread_so_that_workers_start_on_different_programs():
    p = [task(s) for s in range(3)]
    q = [task(s, learning_rate=0.1) for s in range(2)]
    r = [task(0, model="cnn")]
    sweep_order = [*p, *q, *r]
    assert program_key(p[0]) == program_key(p[2]) != program_key(q[0]) != program_key(r[0])
    # Registry defaults written out are the same program as left out.
    assert program_key(task(0, loss_hparams={})) == program_key(task(0))
    assert program_key(task(0, model_hparams={"hidden": [100, 100]})) == program_key(p[0])
    assert spread_programs(sweep_order, 1) == sweep_order
    assert spread_programs(sweep_order, 2) == [p[0], q[0], p[1], q[1], p[2], r[0]]
    assert spread_programs(sweep_order, 3) == [p[0], q[0], r[0], p[1], q[1], p[2]]
    assert spread_programs([q[1], p[0], q[0]], 1) == [q[1], q[0], p[0]]
    assert spread_programs([], 2) == []
    with pytest.raises(ValueError, match="width must be a positive int, got 0"):
        spread_programs(sweep_order, 0)


def test_ood_cost_runs_each_variant_after_a_priming_run_and_divides_by_the_baseline(
    tmp_path, monkeypatch
):
    """The commands it runs (stood in for: each sweep is timed elsewhere) and the ratios
    it prints, worked by hand."""
    walls = {"prime": 99.0, "baseline": 100.0, "scorers": 112.0, "full": 150.0}
    called = []

    def fake_sweep(config, results, cache, overrides):
        name = Path(results).name
        called.append((config, name, overrides))
        experiment = Path(results) / "ood_methods"
        fake_run(experiment, "a", "2026-01-01T10:00:00+00:00", "2026-01-01T10:00:30+00:00", 20.0)
        return walls[name], experiment

    monkeypatch.setattr(ood_cost, "run_sweep_command", fake_sweep)
    out = tmp_path / "ood_cost.md"
    ood_cost.main(["--seeds", "2", "--out", str(out)])
    assert [c[:2] for c in called] == [
        ("experiments/configs/ood_methods.py", "prime"),
        ("experiments/configs/ood_methods.py:baseline", "baseline"),
        ("experiments/configs/ood_methods.py:scorers", "scorers"),
        ("experiments/configs/ood_methods.py", "full"),
    ]
    assert {tuple(c[2]) for c in called} == {("--config.seeds=2",)}
    text = out.read_text()
    assert [r[5] for r in table_rows(text, "baseline")] == ["1.00"]
    assert [r[5] for r in table_rows(text, "scorers")] == ["1.12"]
    assert [r[5] for r in table_rows(text, "(full)")] == ["1.50"]
    assert "`python -m benchmarks.ood_cost --seeds 2 --out" in text
