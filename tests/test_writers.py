"""Metric writers: ``tk.train(logdir=)`` writes TensorBoard event files (read back here with
a TFRecord reader of our own and the event protobuf schema), ``writer=`` takes any object
with ``write_scalars`` and ``close``."""

import math
import struct

import numpy as np
import pytest
from tensorboardX.proto import event_pb2

import toolkit as tk


def read_scalars(logdir):
    """tag -> {step: value} from every event file in ``logdir``: TFRecord framing (length
    uint64, its CRC, the record, its CRC) around serialized ``Event`` protos."""
    scalars = {}
    for path in sorted(logdir.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset : offset + 8])
            record = data[offset + 12 : offset + 12 + length]
            offset += 12 + length + 4
            event = event_pb2.Event.FromString(record)
            for value in event.summary.value:
                scalars.setdefault(value.tag, {})[event.step] = value.simple_value
    return scalars


@pytest.fixture(scope="module")
def digits():
    return tk.data.with_validation(tk.data.load("digits"), 0.2)


OPTIONS = dict(model="mlp", steps=60, batch_size=32, log_every=20, learning_rate=1e-2)


def test_tensorboard_events_hold_the_curve_and_the_learning_rate(digits, tmp_path):
    run = tk.train(digits, **OPTIONS, schedule="cosine", logdir=tmp_path, verbose=False)
    scalars = read_scalars(tmp_path)
    assert set(scalars) == {
        "train/loss",
        "train/accuracy",
        "validation/accuracy",
        "validation/nll",
        "learning_rate",
    }
    for column, tag in [
        ("loss", "train/loss"),
        ("accuracy", "train/accuracy"),
        ("val_accuracy", "validation/accuracy"),
        ("val_nll", "validation/nll"),
    ]:
        expected = {row["step"]: row[column] for row in run.curve if column in row}
        assert sorted(scalars[tag]) == sorted(expected) == [20, 40, 60]
        np.testing.assert_allclose(
            [scalars[tag][s] for s in expected], list(expected.values()), rtol=1e-6
        )
    # Cosine decay (Loshchilov & Hutter 2017) from 1e-2 to 0 over 60 steps, by hand.
    for step, value in scalars["learning_rate"].items():
        assert value == pytest.approx(0.5 * 1e-2 * (1 + math.cos(math.pi * step / 60)), abs=1e-9)


class Recorder:
    def __init__(self):
        self.rows, self.closed = [], False

    def write_scalars(self, step, scalars):
        self.rows.append((step, dict(scalars)))

    def close(self):
        self.closed = True


def test_any_writer_gets_the_rows_and_is_left_open(digits):
    writer = Recorder()
    run = tk.train(digits, **OPTIONS, writer=writer, verbose=False)
    assert [step for step, _ in writer.rows] == [row["step"] for row in run.curve]
    assert writer.rows[-1][1]["train/loss"] == pytest.approx(run.curve[-1]["loss"])
    assert writer.rows[-1][1]["learning_rate"] == pytest.approx(1e-2)  # constant schedule
    assert not writer.closed  # the caller's to close


def test_bad_writer_arguments_fail_before_compute(digits, tmp_path):
    with pytest.raises(ValueError, match=r"logdir=.*or writer=, not both"):
        tk.train(digits, **OPTIONS, logdir=tmp_path, writer=Recorder())
    with pytest.raises(TypeError, match=r"write_scalars.*got 'runs'"):
        tk.train(digits, **OPTIONS, writer="runs")
    with pytest.raises(ValueError, match="applies to sequence data"):  # checked first
        tk.train(digits, **OPTIONS, augment="mnist1d", logdir=tmp_path / "tb")
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="/file' is a file"):
        tk.train(digits, **OPTIONS, logdir=tmp_path / "file" / "tb")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_a_sweep_with_tensorboard_writes_each_runs_curve_under_the_run(tmp_path):
    import json

    from toolkit.sweep.defaults import base_config
    from toolkit.sweep.runner import run_sweep
    from toolkit.sweep.search import product

    config = base_config("tb", dataset="digits")
    config.train.update({"model": "mlp", "steps": 40, "batch_size": 32, "log_every": 20})
    config.executor = "inline"
    config.tensorboard = True
    config.evals = {}
    run_sweep(config, lambda c: product(seed=(0, 1)), results_dir=tmp_path, progress=False)
    runs = sorted((tmp_path / "tb" / "runs").iterdir())
    assert len(runs) == 2
    for run in runs:
        curve = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        scalars = read_scalars(run / "tensorboard")
        assert scalars["train/loss"] == pytest.approx({r["step"]: r["loss"] for r in curve})
        assert sorted(scalars["validation/accuracy"]) == [20, 40]
