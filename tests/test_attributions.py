"""Attributions against hand-computed gradients, closed-form integrals, numpy quadrature,
scipy's Spearman correlation, and the model-randomization test on a trained model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import spearmanr

import toolkit as tk
from toolkit import attributions
from toolkit.data import Split
from toolkit.registry import InvalidHyperparameterError, UnknownNameError

NAMES = attributions.names()
RNG = np.random.default_rng(0)
D, C = 5, 3
W = RNG.normal(size=(D, C)).astype(np.float32)
B = RNG.normal(size=(C,)).astype(np.float32)
X = RNG.normal(size=(4, D)).astype(np.float32)
BASELINE = RNG.normal(size=(D,)).astype(np.float32)


def linear(x):
    return x @ jnp.asarray(W) + jnp.asarray(B)


def key_for(name, seed=0):
    return {"key": jax.random.key(seed)} if attributions.needs_key(name) else {}


# Hand-computed for logits = x W + b: the gradient of logit c is the column W[:, c].
LINEAR_EXPECTED = {
    "vanilla_gradient": lambda x, c: W[:, c].T,
    "gradient_x_input": lambda x, c: x * W[:, c].T,
    "integrated_gradients": lambda x, c: (x - BASELINE) * W[:, c].T,
    "smoothgrad": lambda x, c: W[:, c].T,  # the gradient is the same at every noisy copy
}
LINEAR_HPARAMS = {"integrated_gradients": {"baseline": BASELINE, "steps": 3}}


def test_every_registered_method_has_a_reference_and_a_description():
    assert set(NAMES) == set(LINEAR_EXPECTED)
    for name in NAMES:
        entry = attributions.METHODS.entry(name)
        assert entry.description and "\n" not in entry.description
        assert "target" not in entry.defaults


@pytest.mark.parametrize("name", NAMES)
def test_linear_model_matches_hand_computed_attributions(name):
    target = np.array([0, 2, 1, 2])
    got = attributions.attribute(
        name, linear, X, target, **key_for(name), **LINEAR_HPARAMS.get(name, {})
    )
    np.testing.assert_allclose(got, LINEAR_EXPECTED[name](X, target), rtol=1e-5, atol=1e-5)
    # The default target is the predicted class, computed here in numpy.
    predicted = np.argmax(X @ W + B, axis=1)
    hparams = LINEAR_HPARAMS.get(name, {})
    default = attributions.attribute(name, linear, X, **key_for(name), **hparams)
    np.testing.assert_allclose(default, LINEAR_EXPECTED[name](X, predicted), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_pure_function_is_jittable_and_matches_attribute(name):
    method = attributions.METHODS.get(name, **LINEAR_HPARAMS.get(name, {}))
    jitted = jax.jit(lambda x: method(linear, x, 1, **key_for(name)))(jnp.asarray(X))
    np.testing.assert_allclose(jitted, LINEAR_EXPECTED[name](X, np.ones(4, int)), atol=1e-5)


# f_c(x) = sum_i A[i, c] sin(x_i) + E[c] x_0 x_1: smooth, with a closed-form path integral.
A = RNG.normal(size=(D, C)).astype(np.float32)
E = RNG.normal(size=(C,)).astype(np.float32)


def smooth(x):
    return jnp.sin(x) @ jnp.asarray(A) + x[:, :1] * x[:, 1:2] * jnp.asarray(E)


def smooth_grad_np(x, c):
    g = A[:, c] * np.cos(x)
    g[..., 0] += E[c] * x[..., 1]
    g[..., 1] += E[c] * x[..., 0]
    return g


def test_integrated_gradients_closed_form_on_a_smooth_function():
    c, x, b = 2, X.astype(np.float64), BASELINE.astype(np.float64)
    # int_0^1 cos(b + a (x - b)) da * (x - b) = sin x - sin b; the product term's gradient
    # along the path is linear in a, so its mean is the midpoint value.
    exact = A[:, c] * (np.sin(x) - np.sin(b))
    exact[:, 0] += E[c] * (x[:, 0] - b[0]) * (b[1] + x[:, 1]) / 2
    exact[:, 1] += E[c] * (x[:, 1] - b[1]) * (b[0] + x[:, 0]) / 2
    got = attributions.attribute("integrated_gradients", smooth, X, c, baseline=BASELINE, steps=256)
    np.testing.assert_allclose(got, exact, atol=2e-4)


@pytest.mark.parametrize("rule", attributions.RULES)
def test_integrated_gradients_equals_numpy_quadrature(rule):
    steps, c, x, b = 5, 1, X.astype(np.float64), BASELINE.astype(np.float64)
    grid = np.linspace(0.0, 1.0, steps + 1)
    nodes = {
        "trapezoid": grid,
        "left": grid[:-1],
        "right": grid[1:],
        "midpoint": (grid[:-1] + grid[1:]) / 2,
    }[rule]
    grads = np.stack([smooth_grad_np(b + a * (x - b), c) for a in nodes])  # (K, N, D)
    if rule == "trapezoid":
        integral = np.trapezoid(grads, grid, axis=0)
    else:
        integral = grads.mean(axis=0)
    got = attributions.attribute(
        "integrated_gradients", smooth, X, c, baseline=BASELINE, steps=steps, rule=rule
    )
    np.testing.assert_allclose(got, (x - b) * integral, rtol=1e-5, atol=1e-5)


def test_integrated_gradients_completeness_error_shrinks_with_steps():
    """Sundararajan et al. Prop. 1: sum_i IG_i = F(x) - F(x') up to the quadrature error."""
    rng = np.random.default_rng(3)
    w1, w2 = rng.normal(size=(D, 16)), rng.normal(size=(16, C))

    def mlp(x):  # tanh: smooth, so the trapezoid error falls as steps^-2
        return jnp.tanh(x @ jnp.asarray(w1, jnp.float32)) @ jnp.asarray(w2, jnp.float32)

    def mlp_np(x):
        return np.tanh(x @ w1) @ w2

    x = 2.0 * X
    target = np.argmax(mlp_np(x.astype(np.float64)), axis=1)
    rows = np.arange(len(x))
    delta = mlp_np(x.astype(np.float64))[rows, target] - mlp_np(np.zeros((1, D)))[0, target]
    errors = []
    for steps in (2, 8, 32):
        ig = attributions.attribute("integrated_gradients", mlp, x, steps=steps)
        errors.append(np.max(np.abs(np.asarray(ig, np.float64).sum(axis=1) - delta)))
    assert errors[0] > 4 * errors[1] > 16 * errors[2], errors
    assert errors[2] < 1e-2 * np.max(np.abs(delta)), errors


def test_smoothgrad_matches_the_gaussian_expectation_of_the_gradient():
    """For sin: E[cos(x + e)] = cos(x) exp(-sigma^2 / 2), sigma = scale * (max x - min x)."""
    scale, c = 0.2, 0
    got = attributions.attribute(
        "smoothgrad", smooth, X, c, key=jax.random.key(5), num_samples=4000, noise_scale=scale
    )
    sigma = scale * (X.max(axis=1) - X.min(axis=1))[:, None]
    x = X.astype(np.float64)
    expected = A[:, c] * np.cos(x) * np.exp(-(sigma**2) / 2)
    # E[x_1 + e_1] = x_1: the product term's expected gradient is unchanged.
    expected[:, 0] += E[c] * x[:, 1]
    expected[:, 1] += E[c] * x[:, 0]
    # Monte-Carlo error: per-sample std <= |A| + |E| sigma, over sqrt(4000) samples.
    tol = 5 * (np.abs(A[:, c]).max() + np.abs(E[c]) * sigma.max()) / np.sqrt(4000)
    np.testing.assert_allclose(got, expected, atol=tol)


def test_smoothgrad_zero_noise_is_the_vanilla_gradient_and_key_determines_it():
    vanilla = attributions.attribute("vanilla_gradient", smooth, X)
    zero = attributions.attribute(
        "smoothgrad", smooth, X, key=jax.random.key(0), num_samples=3, noise_scale=0.0
    )
    np.testing.assert_allclose(zero, vanilla, rtol=1e-6, atol=1e-6)
    a, b, other = (
        attributions.attribute("smoothgrad", smooth, X, key=jax.random.key(s), num_samples=4)
        for s in (1, 1, 2)
    )
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, other)


def test_rank_correlation_equals_scipy_spearmanr_with_ties():
    a = RNG.integers(0, 4, size=(3, 12)).astype(np.float32)  # many ties
    b = RNG.normal(size=(3, 12)).astype(np.float32)
    got = attributions.rank_correlation(a, b)
    expected = [spearmanr(a[i], b[i]).statistic for i in range(3)]
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    assert np.isnan(attributions.rank_correlation(np.ones((1, 5)), b[:1, :5])[0])


@pytest.fixture(scope="module")
def trained():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(256, 12)).astype(np.float32)
    y = np.argmax(x[:, :3] * [3.0, 2.0, 1.0], axis=1).astype(np.int32)  # three features matter
    run = tk.train(
        Split(x, y),
        num_classes=3,
        model="mlp",
        model_hparams={"hidden": (16, 16)},
        learning_rate=1e-2,
        batch_size=32,
        steps=200,
        verbose=False,
    )
    return run, x[:12]


def test_model_randomization_separates_trained_from_reinitialized(trained):
    run, x = trained
    hparams = {"integrated_gradients": {"steps": 8}, "smoothgrad": {"num_samples": 8}}
    table = attributions.model_randomization(run, x, key=jax.random.key(0), hparams=hparams)
    layers = ["head", "Dense_1", "Dense_0"]  # from the top down
    assert sorted(table["method"].unique()) == sorted(NAMES)
    for name in NAMES:
        rows = table[table["method"] == name].sort_values("stage")
        assert rows["randomized"].tolist() == ["none", *layers]
        assert rows["spearman"].iloc[0] == pytest.approx(1.0, abs=1e-6)
        assert rows["spearman"].iloc[-1] < 0.8, (name, rows)
    # The fully re-initialized model, recomputed independently with scipy's spearmanr.
    randomized = attributions.randomize_layers(
        run.model, run.variables, layers, key=jax.random.split(jax.random.key(0))[0], example_x=x
    )
    target = np.argmax(np.asarray(run.apply(jnp.asarray(x))), axis=1)
    ref = np.abs(attributions.attribute("vanilla_gradient", run, x, target))
    new = np.abs(
        attributions.attribute("vanilla_gradient", run.model, x, target, variables=randomized)
    )
    rho = np.mean([spearmanr(ref[i], new[i]).statistic for i in range(len(x))])
    last = table[(table["method"] == "vanilla_gradient") & (table["stage"] == 3)]
    assert last["spearman"].item() == pytest.approx(rho, abs=1e-9)
    assert rho < 0.5


def test_run_function_and_module_give_the_same_attributions(trained):
    run, x = trained
    via_run = attributions.attribute("gradient_x_input", run, x, 1)
    via_fn = attributions.attribute("gradient_x_input", run.apply, x, 1)
    via_module = attributions.attribute(
        "gradient_x_input", run.model, x, 1, variables=run.variables
    )
    np.testing.assert_allclose(via_run, via_fn, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(via_module, via_fn, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: attributions.attribute("salency", linear, X), UnknownNameError, "saliency|Valid"),
        (
            lambda: attributions.attribute("vanilla_gradient", linear, X, steps=3),
            InvalidHyperparameterError,
            "has no hyperparameter 'steps'",
        ),
        *(
            (
                lambda s=s: attributions.attribute("integrated_gradients", linear, X, steps=s),
                ValueError,
                f"steps must be a positive int, got {s!r}",
            )
            for s in (0, -2, 2.5, True)
        ),
        (
            lambda: attributions.attribute("integrated_gradients", linear, X, rule="simpson"),
            ValueError,
            "unknown quadrature rule 'simpson'; valid rules: trapezoid, midpoint, left, right",
        ),
        *(
            (
                lambda v=v: attributions.attribute(
                    "smoothgrad", linear, X, key=jax.random.key(0), noise_scale=v
                ),
                ValueError,
                "noise_scale must be finite and >= 0",
            )
            for v in (-0.1, float("nan"))
        ),
        (
            lambda: attributions.attribute(
                "smoothgrad", linear, X, key=jax.random.key(0), num_samples=0
            ),
            ValueError,
            "num_samples must be a positive int, got 0",
        ),
        (lambda: attributions.attribute("smoothgrad", linear, X), TypeError, "pass key="),
        (
            lambda: attributions.attribute("vanilla_gradient", linear, X, key=jax.random.key(0)),
            TypeError,
            "is deterministic and takes no key",
        ),
        (
            lambda: attributions.attribute("vanilla_gradient", tk.models.get("linear"), X),
            TypeError,
            "needs its variables",
        ),
        (
            lambda: attributions.smoothgrad(linear, X, key=jax.random.PRNGKey(0)),
            TypeError,
            "typed PRNG key",
        ),
        (lambda: attributions.attribute("vanilla_gradient", linear, X, 3), ValueError, r"\[0, 3\)"),
        (
            lambda: attributions.attribute("vanilla_gradient", linear, X, np.array([0.5])),
            TypeError,
            "integer class indices",
        ),
        (lambda: attributions.attribute("vanilla_gradient", linear, X[0]), ValueError, "batch"),
        (
            lambda: attributions.attribute(
                "integrated_gradients", linear, X, baseline=np.zeros(3, np.float32)
            ),
            ValueError,
            "does not broadcast",
        ),
    ],
)
def test_bad_input_raises_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_model_randomization_rejects_unknown_methods_and_stray_hparams(trained):
    run, x = trained
    with pytest.raises(UnknownNameError, match="Valid attribution method names"):
        attributions.model_randomization(run, x, key=jax.random.key(0), methods=["grad"])
    with pytest.raises(ValueError, match="not among methods"):
        attributions.model_randomization(
            run,
            x,
            key=jax.random.key(0),
            methods=["vanilla_gradient"],
            hparams={"smoothgrad": {"num_samples": 2}},
        )


def test_figures_draw_the_given_maps_and_correlations():
    import pandas as pd

    from toolkit.attributions import plots

    x = np.linspace(-1, 1, 8)
    a = np.array([0, 1, -2, 0, 0, 0, 0, 4.0])
    fig = plots.attribution_grid({"m": {"c1": (x, a), "c2": (x, -a)}, "n": {"c1": (x, a)}})
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 3
    np.testing.assert_allclose(visible[0].images[0].get_array()[0], a / 4)  # scaled per panel
    np.testing.assert_allclose(visible[0].get_lines()[0].get_ydata(), x)
    with pytest.raises(ValueError, match=r"m/c1: input \(8,\) vs attribution \(3,\)"):
        plots.attribution_grid({"m": {"c1": (x, a[:3])}})
    table = pd.DataFrame(
        {
            "method": ["g", "g", "h", "h"],
            "stage": [0, 1, 0, 1],
            "randomized": ["none", "head", "none", "head"],
            "spearman": [1.0, 0.2, 1.0, 0.7],
            "spearman_se": [0.0, 0.05, 0.0, 0.1],
        }
    )
    lines = plots.randomization_figure(table).axes[0].get_lines()
    curves = [list(np.asarray(line.get_ydata(), float)) for line in lines]
    assert [1.0, 0.2] in curves and [1.0, 0.7] in curves
