"""``tk.evaluate`` with shifts, OOD sets and named sets: the tidy table against numpy/sklearn."""

import collections
import hashlib
import json
import re
import subprocess
import sys
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from scipy.special import log_softmax, softmax
from sklearn.metrics import roc_auc_score

import toolkit as tk
from toolkit.data import Split

RNG = np.random.default_rng(1)
X = RNG.normal(size=(48, 40)).astype(np.float32)
Y = (X[:, :20].sum(1) > 0).astype(np.int32) + 2 * (X[:, 20:].sum(1) > 0)


@pytest.fixture(scope="module")
def run():
    return tk.train(
        Split(X, Y),
        num_classes=4,
        model="mlp",
        model_hparams={"hidden": (16,)},
        learning_rate=1e-2,
        batch_size=16,
        steps=30,
        verbose=False,
    )


def numpy_logits(run, x):
    return np.asarray(run.apply(jnp.asarray(x)), np.float64)


def test_table_rows_match_independent_numpy_and_sklearn(run):
    key = jax.random.key(7)
    table = tk.evaluate(
        run,
        Split(X, Y),
        shifts=["iid_noise"],
        severities=[2, 5],
        ood=["gaussian_noise"],
        sets={"first_half": Split(X[:24], Y[:24])},
        key=key,
    )
    assert list(table["eval_set"]) == [
        "clean",
        "iid_noise",
        "iid_noise",
        "first_half",
        "gaussian_noise",
    ]
    assert list(table["severity"]) == [0, 2, 5, 0, 0]
    clean = table.iloc[0]
    logits = numpy_logits(run, X)
    assert clean["accuracy"] == pytest.approx(np.mean(logits.argmax(1) == Y), abs=1e-6)
    assert clean["nll"] == pytest.approx(-log_softmax(logits, 1)[np.arange(48), Y].mean(), rel=1e-4)

    # A shifted row is the metric on the shifted inputs, with the documented key derivation.
    shift_key = jax.random.fold_in(key, zlib.crc32(b"iid_noise"))
    for row, severity in ((table.iloc[1], 2), (table.iloc[2], 5)):
        x_shift = tk.shifts.apply("iid_noise", jnp.asarray(X), key=shift_key, severity=severity)
        shifted_logits = numpy_logits(run, x_shift)
        assert row["accuracy"] == pytest.approx(np.mean(shifted_logits.argmax(1) == Y), abs=1e-6)
        assert not np.allclose(shifted_logits, logits)

    half = table.iloc[3]
    assert half["accuracy"] == pytest.approx(np.mean(logits[:24].argmax(1) == Y[:24]), abs=1e-6)

    # OOD detection with MSP: in-distribution is the positive class.
    ood = table.iloc[4]
    x_out = tk.ood.load_ood(
        "gaussian_noise",
        Split(X, Y),
        key=jax.random.fold_in(key, __import__("zlib").crc32(b"gaussian_noise")),
        num=48,
    )
    msp_in = softmax(logits, 1).max(1)
    msp_out = softmax(numpy_logits(run, x_out), 1).max(1)
    expected = roc_auc_score(np.r_[np.ones(48), np.zeros(48)], np.r_[msp_in, msp_out])
    assert ood["auroc_msp"] == pytest.approx(expected, abs=1e-5)
    assert {"auroc_energy", "aupr_in_entropy", "fpr_at_95_tpr_max_logit"} <= set(table.columns)
    assert np.isnan(ood["accuracy"])


def test_without_shifts_the_table_has_one_clean_row_with_the_runs_identity(run):
    result = tk.evaluate(run, Split(X, Y))
    assert isinstance(result, pd.DataFrame) and len(result) == 1
    assert {"accuracy", "nll", "brier", "ece", "misclassification_auroc"} <= set(result.columns)
    row = result.iloc[0]
    assert (row["eval_set"], row["kind"], row["severity"], row["num_examples"]) == (
        "clean", "clean", 0, 48
    )  # fmt: skip
    # The run's identity, as given to tk.train; hparams as JSON strings that can be grouped on.
    assert (row["model"], row["loss"], row["optimizer"]) == ("mlp", "softmax_cross_entropy", "adam")
    assert (row["learning_rate"], row["seed"], row["batch_size"], row["steps"]) == (1e-2, 0, 16, 30)
    # Every other config field too (a sweep may vary any of them): the defaults here.
    assert (row["schedule"], row["warmup_steps"]) == ("constant", 0)
    assert pd.isna(row["weight_decay"]) and pd.isna(row["grad_clip"]) and pd.isna(row["log_every"])
    assert json.loads(row["model_hparams"]) == {"hidden": [16]}
    assert json.loads(row["loss_hparams"]) == {} and json.loads(row["optimizer_hparams"]) == {}
    logits = numpy_logits(run, X)
    assert result.loc[0, "accuracy"] == pytest.approx(np.mean(logits.argmax(1) == Y), abs=1e-6)
    assert "reliability" not in result.columns


def digest(x) -> str:
    return hashlib.blake2b(np.ascontiguousarray(np.asarray(x)).tobytes(), digest_size=8).hexdigest()


def count_predictions(monkeypatch) -> collections.Counter:
    """Counts tk.predict calls by the bytes of the inputs (one key per evaluation set)."""
    from toolkit.evaluation import inference

    calls: collections.Counter = collections.Counter()
    predict = inference.predict

    def counting(run, x, **kwargs):
        calls[digest(x)] += 1
        return predict(run, x, **kwargs)

    monkeypatch.setattr(inference, "predict", counting)
    return calls


def test_each_set_is_predicted_once_and_reliability_comes_from_the_same_logits(run, monkeypatch):
    calls = count_predictions(monkeypatch)
    key = jax.random.key(3)
    table = tk.evaluate(
        run,
        Split(X, Y),
        shifts=["iid_noise", "translation"],
        severities=[1, 4],
        ood=["gaussian_noise", "uniform_noise"],
        sets={"first_half": Split(X[:24], Y[:24])},
        key=key,
        reliability=True,
    )
    assert len(table) == 1 + 4 + 1 + 2
    # clean, 4 shifted sets, first_half, 2 OOD sets: 8 distinct inputs, each predicted once.
    assert len(calls) == 8 and set(calls.values()) == {1}, calls
    assert digest(X) in calls
    # The reliability bins (Guo et al. 2017) of the clean row, recomputed in numpy.
    probs = softmax(numpy_logits(run, X), 1)
    confidence, correct = probs.max(1), probs.argmax(1) == Y
    bins = np.minimum((confidence * 15).astype(int), 14)
    counts = np.bincount(bins, minlength=15)
    bins_of_clean = table.loc[0, "reliability"]
    np.testing.assert_array_equal(bins_of_clean["bin_count"], counts)
    mean_correct = np.bincount(bins, weights=correct, minlength=15) / np.maximum(counts, 1)
    np.testing.assert_allclose(bins_of_clean["bin_accuracy"], mean_correct, atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shifts": ["rotate"]}, "shift 'rotate' applies to image data"),
        ({"shifts": ["iid_nois"]}, "Did you mean 'iid_noise'"),
        ({"shifts": ["iid_noise"], "severities": [6]}, "severity must be an int in 0..5"),
        ({"ood": ["nonexistent_set"]}, "unknown OOD set 'nonexistent_set'"),
        ({"ood": ["gaussian_noise"], "ood_scores": ["msq"]}, "Did you mean 'msp'"),
        ({"shifts": ["iid_noise"], "cache": "yes"}, "cache must be True or False, got 'yes'"),
        ({"shifts": 5}, "shifts must be a name or a list of names, got 5"),
        ({"ood": [3]}, "ood must be a name or a list of names, got [3]"),
    ],
)
def test_bad_names_fail_before_compute(run, kwargs, message, monkeypatch):
    calls = []
    from toolkit.evaluation import inference

    monkeypatch.setattr(inference, "predict", lambda *a, **k: calls.append(1))
    with pytest.raises((ValueError, TypeError), match=re.escape(message)):
        tk.evaluate(run, Split(X, Y), **kwargs)
    assert not calls  # nothing was computed


def test_one_name_and_one_severity_mean_a_list_of_one(run):
    """``shifts="iid_noise"`` is that shift (not the shifts 'i', 'i', 'd', ...), a bare
    severity is one severity, and a bare OOD name one set: the same rows as the lists."""
    split = Split(X, Y)
    bare = tk.evaluate(run, split, shifts="iid_noise", severities=3, ood="gaussian_noise")
    listed = tk.evaluate(run, split, shifts=["iid_noise"], severities=[3], ood=["gaussian_noise"])
    assert list(bare["eval_set"]) == ["clean", "iid_noise", "gaussian_noise"]
    pd.testing.assert_frame_equal(bare, listed)


def test_the_issue_call_on_mocked_tfds_mnist_with_fashion_mnist_as_ood(tmp_path):
    """tk.evaluate(run, ds.test, shifts=[...], severities=range(1, 6), ood=["fashion_mnist"])."""
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=12, policy=tfds.testing.MockPolicy.USE_CODE):
        kwargs = {"data_dir": str(tmp_path), "download": True}  # mocked: nothing is fetched
        ds = tk.data.load("mnist", **kwargs)
        run = tk.train(ds, model="linear", steps=3, batch_size=4, verbose=False)
        table = tk.evaluate(
            run,
            ds.test,
            shifts=["rotate", "shot_noise"],
            severities=range(1, 6),
            ood=["fashion_mnist"],
            data_kwargs=kwargs,
        )
    assert len(table) == 1 + 2 * 5 + 1
    assert table.groupby("eval_set")["severity"].apply(list).to_dict() == {
        "clean": [0],
        "rotate": [1, 2, 3, 4, 5],
        "shot_noise": [1, 2, 3, 4, 5],
        "fashion_mnist": [0],
    }
    assert table[table.kind == "shift"]["accuracy"].notna().all()
    assert 0 <= table[table.kind == "ood"]["auroc_msp"].item() <= 1


CLEAN_EVALUATION = """
import sys
import numpy as np
import toolkit as tk
import toolkit.ood, toolkit.shifts, toolkit.sweep.execute
x = np.random.default_rng(0).normal(size=(32, 40)).astype(np.float32)
y = (x[:, 0] > 0).astype(np.int32)
run = tk.train(tk.data.Split(x, y), num_classes=2, model="linear", steps=2, batch_size=16,
               verbose=False)
tk.evaluate(run, tk.data.Split(x, y))
print(sorted(m for m in sys.modules if m.startswith("scipy.ndimage")))
"""


def test_clean_evaluation_in_a_fresh_process_does_not_import_scipy_ndimage():
    """scipy.ndimage takes about 0.35 s to import; only MNIST-1D's unseen templates and the
    correlated-noise shift use it, so a sweep worker or notebook that evaluates on clean data
    (which imports the shift and OOD registries) must not pay for it."""
    done = subprocess.run(
        [sys.executable, "-c", CLEAN_EVALUATION], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_regenerated_and_label_shifted_specs_are_rows_of_their_own_sets():
    """Eval-set specs in ``sets=``: a regenerated MNIST-1D test set (a new generator draw)
    and a label-shifted resample, each checked against numpy on the set it names."""
    from toolkit.data.label_shift import label_shift
    from toolkit.evaluation import LabelShifted, Regenerated
    from toolkit.evaluation.regenerated import mnist1d_shifted_test

    ds = tk.data.load("mnist1d", num_samples=300)
    small = tk.train(ds, model="linear", steps=5, batch_size=20, verbose=False)
    key = jax.random.key(2)
    specs = [
        Regenerated("iid_noise", 4, generator_args={"num_samples": 300}),
        LabelShifted(0, options={"alpha": 0.5, "num_classes": 10}),
    ]
    table = tk.evaluate(small, ds.test, sets=specs, key=key)
    assert list(zip(table.eval_set, table.kind, table.severity, strict=True)) == [
        ("clean", "clean", 0),
        ("regenerated/iid_noise", "set", 4),
        ("label_shift/0", "set", 0),
    ]
    regenerated = mnist1d_shifted_test("iid_noise", 4, num_samples=300)
    shifted_key = jax.random.fold_in(jax.random.fold_in(key, zlib.crc32(b"label_shift")), 0)
    resampled = label_shift(ds.test, key=shifted_key, alpha=0.5, num_classes=10).split
    for row, split in zip(table.iloc[1:].itertuples(), (regenerated, resampled), strict=True):
        logits = numpy_logits(small, split.x)
        assert row.num_examples == len(split)
        assert row.accuracy == pytest.approx(np.mean(logits.argmax(1) == split.y), abs=1e-6)
    with pytest.raises(ValueError, match="no severity 3; valid: 0, 5"):
        tk.evaluate(small, ds.test, sets=[Regenerated("shuffle", 3)])
