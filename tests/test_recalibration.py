"""Temperature-scaled metrics and the collapse detector of evaluation rows, against numpy and
SciPy: ``evaluate_sets(..., calibration=...)``, ``tk.evaluate(..., calibration=...)`` and
``max_class_fraction``."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

import toolkit as tk
from toolkit.data import Split
from toolkit.evaluation import core, inference
from toolkit.evaluation.core import evaluate_sets
from toolkit.evaluation.methods import Fitted
from toolkit.evaluation.scoring import classification_row
from toolkit.evaluation.sets import FarOod, Given

RNG = np.random.default_rng(5)


def _logits(n, num_classes, scale):
    """Overconfident logits: informative about the label, multiplied by ``scale``."""
    y = RNG.integers(0, num_classes, n)
    z = RNG.normal(size=(n, num_classes)) + 1.5 * np.eye(num_classes)[y]
    return scale * z, y.astype(np.int32)


def _nll(z, y):
    return -log_softmax(z, 1)[np.arange(len(y)), y].mean()


def _ece(z, y, bins=15):
    p = softmax(z, 1)
    conf, correct = p.max(1), p.argmax(1) == y
    index = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)  # (lo, hi] bins
    return sum(abs(correct[index == b].sum() - conf[index == b].sum()) for b in range(bins)) / len(
        y
    )


def _brier(z, y):
    return ((softmax(z, 1) - np.eye(z.shape[1])[y]) ** 2).sum(1).mean()


@pytest.fixture
def fixed_logits(monkeypatch):
    """Makes inference.predict return hand-made logits chosen by the inputs' first column."""
    table = {}

    def predict(run, x, **kwargs):
        return jnp.asarray(table[float(np.asarray(x)[0, 0])], jnp.float32)

    monkeypatch.setattr(inference, "predict", predict)
    # No model stands behind the hand-made logits (run=None): nothing to check of it.
    monkeypatch.setattr(core, "check_run", lambda run, sets: None)

    def split_for(tag, logits, labels):
        x = np.full((len(labels), 2), tag, np.float32)
        table[float(tag)] = logits.astype(np.float32)
        return Split(x, labels)

    return split_for


def test_temperature_scaled_metrics_match_numpy_at_the_scipy_temperature(fixed_logits):
    val_z, val_y = _logits(400, 5, 4.0)
    test_z, test_y = _logits(300, 5, 4.0)
    other_z, other_y = _logits(200, 5, 2.0)
    calibration = fixed_logits(1, val_z, val_y)
    test = fixed_logits(2, test_z, test_y)
    other = fixed_logits(3, other_z, other_y)
    fixed_logits(4, RNG.normal(size=(300, 5)), np.zeros(300, np.int32))  # OOD inputs

    fit = minimize_scalar(
        lambda log_t: _nll(val_z / np.exp(log_t), val_y),
        bounds=(np.log(1e-2), np.log(1e2)),
        method="bounded",
        options={"xatol": 1e-10},
    )
    t = float(np.exp(fit.x))
    assert t > 2  # the logits were made overconfident

    ood = FarOod("noise", given=np.full((300, 2), 4, np.float32))
    rows = evaluate_sets(None, test, [Given("other", other), ood], calibration=calibration)
    assert [r["eval_set"] for r in rows] == ["clean", "other", "noise"]
    for row, (z, y) in zip(rows, [(test_z, test_y), (other_z, other_y)], strict=False):
        z = z.astype(np.float32).astype(np.float64)
        assert row["temperature"] == pytest.approx(t, rel=1e-5)
        assert row["nll_ts"] == pytest.approx(_nll(z / t, y), rel=1e-4)
        assert row["ece_ts"] == pytest.approx(_ece(z / t, y), abs=1e-5)
        assert row["brier_ts"] == pytest.approx(_brier(z / t, y), rel=1e-4)
        assert row["nll"] == pytest.approx(_nll(z, y), rel=1e-4)  # raw metrics unchanged
    assert rows[0]["nll_ts"] < rows[0]["nll"]  # same overconfidence as the calibration set
    assert rows[2]["temperature"] == pytest.approx(t, rel=1e-5)
    assert "nll_ts" not in rows[2]

    # A temperature fitted before gives the same rows as its calibration split.
    fitted = Fitted(temperature=rows[0]["temperature"])
    given = evaluate_sets(None, test, [Given("other", other)], fitted=fitted)
    for row, expected in zip(given, rows, strict=False):
        assert {k: row[k] for k in ("nll_ts", "ece_ts", "brier_ts")} == {
            k: expected[k] for k in ("nll_ts", "ece_ts", "brier_ts")
        }
    with pytest.raises(ValueError, match="exclusive"):
        evaluate_sets(None, test, [], fitted=fitted, calibration=calibration)

    plain = evaluate_sets(None, test, [Given("other", other)])
    assert not {"temperature", "nll_ts", "ece_ts", "brier_ts"} & set(plain[0])


@pytest.mark.parametrize(
    ("predicted", "expected"),
    [([0, 0, 1, 2], 0.5), ([3, 3, 3, 3, 3], 1.0), ([0, 1], 0.5), ([2, 0, 2, 1, 2, 2], 4 / 6)],
)
def test_max_class_fraction(predicted, expected):
    logits = np.eye(4)[predicted] * 3.0
    row = classification_row(jnp.asarray(logits), np.zeros(len(predicted), np.int32))
    assert row["max_class_fraction"] == pytest.approx(expected)


def test_tk_evaluate_passes_calibration_through():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 20)).astype(np.float32)
    y = (x[:, :10].sum(1) > 0).astype(np.int32)
    run = tk.train(Split(x[:64], y[:64]), num_classes=2, model="linear", steps=20,
                   batch_size=16, learning_rate=0.1, verbose=False)  # fmt: skip
    held = Split(x[64:], y[64:])
    table = tk.evaluate(run, Split(x[:64], y[:64]), shifts=["iid_noise"], severities=[3],
                        calibration=held)  # fmt: skip
    val_z = np.asarray(run.apply(jnp.asarray(held.x)), np.float64)
    fit = minimize_scalar(
        lambda log_t: _nll(val_z / np.exp(log_t), held.y),
        bounds=(np.log(1e-2), np.log(1e2)),
        method="bounded",
        options={"xatol": 1e-10},
    )
    t = float(np.exp(fit.x))
    assert table["temperature"].tolist() == pytest.approx([t, t], rel=1e-4)
    z = np.asarray(run.apply(jnp.asarray(x[:64])), np.float64)
    assert table.loc[0, "nll_ts"] == pytest.approx(_nll(z / t, y[:64]), rel=1e-4)
    assert table["max_class_fraction"].between(0.5, 1).all()
    with pytest.raises(ValueError, match="calibration must be a non-empty labelled Split"):
        tk.evaluate(run, held, calibration=Split(x[:0], y[:0]))
