"""Sweeps that use names registered outside what worker processes import: run inline
(saying so) for __main__ registrations under ``auto``, refused for an explicit ``process``,
and a worker that meets an unknown name says how to fix it."""

import json

import pytest

import toolkit as tk
from toolkit.sweep.config import SweepConfigError
from toolkit.sweep.defaults import base_config
from toolkit.sweep.runner import run_sweep
from toolkit.sweep.search import product

CELL = (
    "import toolkit as tk\n"
    "@tk.losses.register('cell_loss', description='A loss from a notebook cell.')\n"
    "def cell_loss(logits, labels, *, scale=1.0):\n"
    "    return scale * tk.losses.get('softmax_cross_entropy')(logits, labels)\n"
)


@pytest.fixture
def scratch_losses(monkeypatch):
    registry = tk.losses.losses
    monkeypatch.setattr(registry, "_entries", dict(registry._entries))


def config(executor):
    config = base_config("cells", dataset="digits")
    config.train.update({"model": "linear", "steps": 20, "batch_size": 32, "log_every": 10})
    config.executor = executor
    config.workers = 1
    config.evals = {}
    return config


def trials(_):
    return product(loss=("cell_loss",), seed=(0,))


def test_a_notebook_registration_runs_inline_under_auto_and_is_refused_for_process(
    scratch_losses, tmp_path, capsys
):
    exec(CELL, {"__name__": "__main__"})  # as a notebook kernel runs a cell
    with pytest.raises(SweepConfigError, match=r"loss 'cell_loss' registered in __main__.*inline"):
        run_sweep(config("process"), trials, results_dir=tmp_path, progress=False)
    assert not list(tmp_path.iterdir())
    result = run_sweep(config("auto"), trials, results_dir=tmp_path, progress=False)
    assert result.executor == "inline" and result.count("trained") == 1
    assert "running inline in this process: loss 'cell_loss'" in capsys.readouterr().err


def module_loss(logits, labels, *, scale=1.0):
    return scale * tk.losses.get("softmax_cross_entropy")(logits, labels)


@pytest.mark.slow
def test_a_worker_that_meets_an_unknown_name_says_how_to_fix_it(scratch_losses, tmp_path):
    """Registered in this test module (not __main__), which the spawned worker never
    imports: the run fails there, and error.json says why and what to do."""
    tk.losses.register("module_loss", description="A loss of a module.")(module_loss)
    only = lambda _: product(loss=("module_loss",), seed=(0,))
    result = run_sweep(config("process"), only, results_dir=tmp_path, progress=False)
    assert result.count("failed") == 1
    [error] = (tmp_path / "cells" / "runs").glob("*/error.json")
    message = json.loads(error.read_text())["message"]
    assert "unknown loss 'module_loss'" in message
    assert "register them in the config file" in message
