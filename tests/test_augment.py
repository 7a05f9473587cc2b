"""Training-time augmentation (toolkit.augment): each entry against hand-computed cases,
the Jensen-Shannon term against scipy, the AugMix objective against a numpy one, and bad
choices refused before compute."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import toolkit as tk
from toolkit import augment
from toolkit.train_step import make_train_step

KEY = jax.random.key(0)


def images(n=6, size=8):
    return jax.random.uniform(jax.random.key(1), (n, size, size, 1))


def test_every_entry_keeps_shapes_and_declares_its_data_and_views():
    data = {"image": images(), "sequence": jax.random.normal(jax.random.key(2), (6, 40))}
    for name in augment.names():
        meta = augment.entry(name).meta
        for kind in meta["applies_to"]:
            views = augment.get(name)(data[kind], key=KEY)
            assert views.shape == (meta["views"], *data[kind].shape), name
            assert views.dtype == data[kind].dtype
            assert not np.allclose(views[-1], data[kind]), f"{name} changed nothing"


@pytest.mark.parametrize("flip", [False, True])
def test_crop_is_a_window_of_the_zero_padded_batch(flip):
    x = np.asarray(images())
    out = np.asarray(augment.get("crop", padding=2, flip=flip)(jnp.asarray(x), key=KEY)[0])
    padded = np.pad(x, [(0, 0), (2, 2), (2, 2), (0, 0)])
    offsets = set()
    for i in range(len(x)):
        found = []
        for a, b, mirrored in itertools.product(range(5), range(5), (False, True)):
            window = padded[i, a : a + 8, b : b + 8]
            if np.array_equal(out[i], window[:, ::-1] if mirrored else window):
                found.append((a, b, mirrored))
        assert found and (flip or not found[0][2]), i
        offsets.add(found[0])
    assert len(offsets) > 1  # each example draws its own offset
    if flip:
        assert any(mirrored for _, _, mirrored in offsets)


def test_crop_on_sequences_shifts_along_time():
    x = np.arange(12, dtype=np.float32).reshape(2, 6) + 1
    out = np.asarray(augment.get("crop", padding=1)(jnp.asarray(x), key=KEY)[0])
    padded = np.pad(x, [(0, 0), (1, 1)])
    for i in range(2):
        assert any(np.array_equal(out[i], padded[i, a : a + 6]) for a in range(3))


@pytest.mark.parametrize("depth", [1, 2, 0])
def test_augmix_mixes_each_image_with_its_chain(depth):
    """With one deterministic op (contrast), each chain of length d is contrast applied d
    times, so every output is m * x + (1 - m) * contrast^d(x) for one m in [0, 1] (the
    Beta draw) and d the depth (drawn from 1-3 when depth=0)."""
    x = images()
    out = augment.get("augmix", ops=("contrast",), width=2, depth=depth)(x, key=KEY)[0]
    chains = [x]
    for _ in range(3):
        chains.append(tk.shifts.apply("contrast", chains[-1], key=KEY, severity=3))
    mixes = []
    for i in range(x.shape[0]):
        xi, oi = np.asarray(x[i]).ravel(), np.asarray(out[i]).ravel()
        fits = []
        for d in [depth] if depth else [1, 2, 3]:
            ci = np.asarray(chains[d][i]).ravel()
            m = np.dot(oi - ci, xi - ci) / np.dot(xi - ci, xi - ci)
            fits.append((np.abs(m * xi + (1 - m) * ci - oi).max(), m))
        residual, m = min(fits)
        assert residual < 1e-5 and -1e-6 <= m <= 1 + 1e-6, (i, fits)
        mixes.append(m)
    assert np.std(mixes) > 0.01  # a Beta draw per image


def test_augmix_jsd_gives_the_clean_batch_and_two_different_views():
    x = images()
    views = augment.get("augmix_jsd")(x, key=KEY)
    np.testing.assert_array_equal(views[0], x)
    assert not np.allclose(views[1], views[2])


def test_mnist1d_transforms_are_the_identity_at_p_zero():
    x = jax.random.normal(jax.random.key(2), (4, 40))
    np.testing.assert_array_equal(augment.get("mnist1d", p=0.0)(x, key=KEY)[0], x)
    changed = augment.get("mnist1d", p=1.0)(x, key=KEY)[0]
    assert all(not np.allclose(changed[i], x[i]) for i in range(4))


def test_jensen_shannon_against_scipy_entropies():
    """JS(p_1..p_V) = H(mean p) - mean H(p_v) (Lin 1991), in nats."""
    logits = jax.random.normal(jax.random.key(3), (3, 5, 4)) * 2
    p = np.asarray(jax.nn.softmax(logits, axis=-1), np.float64)
    expected = scipy.stats.entropy(p.mean(0), axis=-1) - scipy.stats.entropy(p, axis=-1).mean(0)
    np.testing.assert_allclose(augment.jensen_shannon(logits), expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(augment.jensen_shannon(jnp.stack([logits[0]] * 3)), 0, atol=1e-6)


def test_the_augmix_objective_is_clean_loss_plus_weighted_jsd():
    """One step with fixed views: the reported loss is CE on the clean view plus 12 x the
    mean JSD of the three views' predictions (Hendrycks et al. 2020, eq. 3), by numpy."""
    model = tk.models.get("mlp", num_classes=3, hidden=(8,))
    x = jax.random.normal(jax.random.key(4), (5, 6))
    y = jnp.asarray([0, 1, 2, 1, 0])
    views = jnp.stack([x, x + 0.5, x * 2])
    tx = tk.optimizers.get("sgd", learning_rate=0.1)
    state = tk.train_step.init_state(model, tx, x, key=KEY)
    loss_fn = tk.losses.get("softmax_cross_entropy")
    step = make_train_step(model, loss_fn, tx, augment=lambda x, key: views, jsd_weight=12.0)
    _, metrics = step(state, (x, y), KEY)
    logits = np.stack([np.asarray(model.apply({"params": state.params}, v)) for v in views])
    log_p = logits - scipy.special.logsumexp(logits, axis=-1, keepdims=True)
    ce = -log_p[0, np.arange(5), np.asarray(y)].mean()
    p = np.exp(log_p)
    jsd = (scipy.stats.entropy(p.mean(0), axis=-1) - scipy.stats.entropy(p, axis=-1).mean(0)).mean()
    assert float(metrics["loss"]) == pytest.approx(ce + 12 * jsd, rel=1e-5)
    accuracy = (logits[0].argmax(-1) == np.asarray(y)).mean()
    assert float(metrics["accuracy"]) == pytest.approx(accuracy)


def test_augmentation_trains_on_device_and_helps_under_rotation():
    """LeNet-5 on digits, 200 steps: AugMix's rotations lift rotated-test accuracy."""
    ds = tk.data.load("digits")
    options = dict(model="lenet5", steps=200, batch_size=64, learning_rate=3e-3, verbose=False)
    accuracy = {}
    for name in (None, "augmix"):
        run = tk.train(ds, augment=name, **options)
        table = tk.evaluate(run, ds.test, shifts=["rotate"], severities=[3])
        accuracy[name] = table.set_index("eval_set")["accuracy"]
    assert accuracy["augmix"]["rotate"] > accuracy[None]["rotate"] + 0.1
    assert accuracy["augmix"]["clean"] > 0.7


BAD = {
    "unknown name": (dict(augment="augmx"), "'augmx'.*Did you mean 'augmix'"),
    "hparams without augment": (dict(augment_hparams={"width": 2}), "without an augment"),
    "unknown hparam": (dict(augment="augmix", augment_hparams={"widht": 2}), "'widht'"),
    "wrong data kind": (dict(augment="mnist1d"), r"sequence data.*\(8, 8, 1\).*augmix"),
    "severity out of range": (
        dict(augment="augmix", augment_hparams={"severity": 7}),
        "1..5, got 7",
    ),
    "string width": (dict(augment="augmix", augment_hparams={"width": "3"}), "width='3'"),
    "op for other data": (
        dict(augment="augmix", augment_hparams={"ops": ("iid_noise",)}),
        "'iid_noise' applies to sequence",
    ),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_augmentation_choices_fail_before_compute(case, compiles):
    changes, message = BAD[case]
    with pytest.raises((ValueError, TypeError), match=message):
        tk.train(tk.data.load("digits"), model="mlp", steps=10, batch_size=32, **changes)
    assert compiles == []


def test_a_sweep_refuses_an_augmentation_for_other_data_before_writing(tmp_path):
    from toolkit.sweep.config import SweepConfigError
    from toolkit.sweep.defaults import base_config
    from toolkit.sweep.runner import run_sweep
    from toolkit.sweep.search import product

    config = base_config("aug", dataset="digits")
    config.train.update({"model": "mlp", "steps": 10, "batch_size": 32})
    config.executor = "inline"
    trials = lambda c: product(augment=(None, "mnist1d"), seed=(0,))
    with pytest.raises(SweepConfigError, match=r"trial 1 of 2.*'mnist1d' applies to sequence"):
        run_sweep(config, trials, results_dir=tmp_path, progress=False)
    assert not list(tmp_path.iterdir())


def test_runs_with_different_augmentations_are_different_configurations(tmp_path):
    """Their rows carry augment/augment_hparams and the report averages each alone."""
    from toolkit import report
    from toolkit.sweep.defaults import base_config
    from toolkit.sweep.runner import run_sweep
    from toolkit.sweep.search import product

    config = base_config("aug", dataset="digits")
    config.train.update({"model": "mlp", "steps": 20, "batch_size": 32, "log_every": 10})
    config.executor = "inline"
    config.evals = {}
    augmentations = [{"augment": None}, {"augment": "crop", "augment_hparams": {"padding": 1}}]
    trials = lambda c: product(augmentation=augmentations, seed=(0, 1))
    run_sweep(config, trials, results_dir=tmp_path, progress=False)
    groups = report.aggregate(report.per_run(report.load_results(tmp_path / "aug")))
    assert sorted(groups["augment"]) == ["crop", "none"]
    assert len(groups) == 2 and (groups["n_runs"] == 2).all()
    crop = groups[groups["augment"] == "crop"].iloc[0]
    assert crop["augment_hparams"] == '{"padding":1}'
