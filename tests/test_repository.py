"""The set-up commands in README.md are the ones CI runs, and results name their commands."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Set-up on a fresh machine", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section, flags=re.S)


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one():
    commands = readme_commands()
    assert len(commands) == 2, commands
    main_job, tests = commands
    assert main_job.startswith("python -m pip install -e .") and "experiments." in main_job
    assert "pytest" in tests
    ci = (ROOT / ".ci" / "run").read_text()
    assert tests in ci  # CI runs exactly the README's test command


def test_every_committed_result_names_the_command_that_regenerates_it():
    index = (ROOT / "results" / "README.md").read_text()
    for path in (ROOT / "results").glob("*.*"):
        if path.name != "README.md":
            assert path.name in index, f"{path.name} is not listed in results/README.md"
    assert (
        "python -m experiments.mnist1d_table" in (ROOT / "results" / "mnist1d_table.md").read_text()
    )


def test_every_committed_experiment_has_a_readme_with_its_commands_and_a_report():
    experiments = [p for p in (ROOT / "results").iterdir() if (p / "evals.jsonl").exists()]
    assert experiments, "no committed experiment under results/"
    index = (ROOT / "results" / "README.md").read_text()
    for experiment in experiments:
        name = experiment.name
        readme = (experiment / "README.md").read_text()
        for command in (
            f"python -m experiments.sweep --config experiments/configs/{name}.py",
            f"python -m experiments.report results/{name}",
        ):
            assert command in readme, f"results/{name}/README.md lacks `{command}`"
            assert command in index, f"results/README.md lacks `{command}`"
        assert (experiment / "report" / "report.md").exists()
        # Only data is committed: no checkpoints, locks or pickles.
        tracked = [p for p in experiment.rglob("*") if p.is_file()]
        assert not [p for p in tracked if p.suffix in (".pkl", ".pickle", ".npy")]
