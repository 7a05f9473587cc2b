"""Search spaces: declared beside the defaults in the registries, checked at registration,
drawn reproducibly from names and indices, and every draw builds its entry."""

import functools
import math
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import toolkit as tk
from toolkit.registry import Registry
from toolkit.search_space import draw_trial
from toolkit.sweep.config import SweepConfigError
from toolkit.sweep.search import random_search

REGISTRIES = {"loss": tk.losses, "optimizer": tk.optimizers, "model": tk.models}
ENTRIES = [(kind, name) for kind, module in REGISTRIES.items() for name in module.names()]


# -- declaration and checks ------------------------------------------------------------------


def test_a_registered_space_is_stored_beside_the_defaults():
    reg = Registry("loss", build=functools.partial)

    @reg.register("focal", description="A focal loss.", search_space={"gamma": ("uniform", 0, 5)})
    def focal(logits, labels, *, gamma=2.0, alpha=None):
        return gamma

    reg.add("plain", lambda logits, labels: 0, description="No hyperparameters.")
    assert reg.search_space("focal") == {"gamma": ("uniform", 0, 5)}
    assert reg.entry("focal").defaults == {"gamma": 2.0, "alpha": None}
    assert reg.search_space("plain") == {}
    reg.search_space("focal")["gamma"] = ("uniform", 0, 1)  # a copy: the entry is unchanged
    assert reg.search_space("focal") == {"gamma": ("uniform", 0, 5)}


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"gama": ("uniform", 0, 5)}, r"'gama', which is not one of its hyperparameters \(alpha"),
        ({"gamma": ("log_uniform", 1, 5)}, r"Did you mean 'loguniform'\?.*uniform, loguniform"),
        ({"gamma": ("loguniform", 0.0, 5)}, "positive bounds"),
        ({"gamma": ("uniform", 5, 1)}, "low < high"),
        ({"gamma": ("uniform", 1)}, "two bounds"),
        ({"gamma": ("randint", 0.5, 3)}, "integer bounds"),
        ({"gamma": ("choice",)}, "at least one value"),
        ({"gamma": "uniform"}, r"must be \(distribution, \*args\)"),
    ],
)
def test_a_bad_space_fails_at_registration_naming_the_entry(space, message):
    reg = Registry("loss", build=functools.partial)
    with pytest.raises(ValueError, match=message) as error:
        reg.add("focal", lambda x, *, gamma=2.0, alpha=None: x, description="d", search_space=space)
    assert "loss 'focal'" in str(error.value)
    assert "focal" not in reg


def test_draws_come_from_name_and_index_seeded_generators():
    spec = ("loguniform", 1e-4, 3e-2)
    for index in range(4):
        rng = np.random.default_rng([1000, zlib.crc32(b"learning_rate"), index])
        expected = math.exp(rng.uniform(math.log(1e-4), math.log(3e-2)))
        assert draw_trial("learning_rate", spec, seed=1000, index=index) == pytest.approx(expected)
    rng = np.random.default_rng([3, zlib.crc32(b"model_hparams.hidden"), 2])
    choices = ((50, 50), (100, 100), (200, 200))
    drawn = draw_trial("model_hparams.hidden", ("choice", *choices), seed=3, index=2)
    assert drawn == choices[int(rng.integers(3))]
    rng = np.random.default_rng([3, zlib.crc32(b"width"), 0])
    assert draw_trial("width", ("randint", 2, 9), seed=3, index=0) == rng.integers(
        2, 9, endpoint=True
    )


def test_random_search_reports_bad_spaces_as_config_errors():
    with pytest.raises(SweepConfigError, match="loguniform needs positive bounds"):
        random_search({"learning_rate": ("loguniform", 0.0, 1.0)}, 2)


# -- the declared spaces ---------------------------------------------------------------------


def _contains(spec, value) -> bool:
    kind, *args = spec
    if kind == "choice":
        return value in args
    low, high = args
    return low <= value <= high


@pytest.mark.parametrize(("kind", "name"), ENTRIES, ids=lambda v: str(v))
def test_every_space_names_hparams_and_contains_the_defaults(kind, name):
    module = REGISTRIES[kind]
    space = module.search_space(name)
    defaults = module.entry(name).defaults
    assert set(space) <= set(defaults)
    for key, spec in space.items():
        # Trial 0 of a tuned sweep is the defaults: they lie inside the space drawn from
        # (weight decay may default to off, which no log-uniform range holds).
        if key == "weight_decay" and defaults[key] == 0.0:
            continue
        assert _contains(spec, defaults[key]), (key, spec, defaults[key])


def test_every_optimizer_tunes_its_learning_rate_log_uniformly():
    for name in tk.optimizers.names():
        space = tk.optimizers.search_space(name)
        assert space["learning_rate"][0] == "loguniform", name
        assert space["weight_decay"][0] == "loguniform", name
    # Ranges suit the optimizer: SGD's reaches rates Adam's does not, and Lion's sits below.
    assert tk.optimizers.search_space("sgd")["learning_rate"] == ("loguniform", 1e-3, 1.0)
    assert tk.optimizers.search_space("adam")["learning_rate"] == ("loguniform", 1e-4, 3e-2)
    assert tk.optimizers.search_space("lion")["learning_rate"][2] < 3e-2


def test_losses_with_hyperparameters_declare_a_space():
    for name in tk.losses.names():
        tunable = set(tk.losses.entry(name).defaults) - {"eps", "log_zero", "num_iters", "alpha"}
        tunable -= {"smoothing"} if name == "bi_tempered" else set()
        assert tunable <= set(tk.losses.search_space(name)), name


def _drawn(kind: str, name: str, index: int) -> dict:
    space = REGISTRIES[kind].search_space(name)
    return {k: draw_trial(k, spec, seed=0, index=index) for k, spec in space.items()}


LOGITS = jnp.asarray(np.random.default_rng(0).normal(size=(6, 10)), jnp.float32)
LABELS = jnp.asarray([0, 1, 2, 3, 4, 9])


@pytest.mark.parametrize("name", tk.losses.names())
def test_every_drawn_loss_builds_and_gives_finite_values(name):
    for index in range(1, 4):
        fn = tk.losses.get(name, **_drawn("loss", name, index))
        values = fn(LOGITS, LABELS)
        assert values.shape == (6,) and bool(jnp.all(jnp.isfinite(values))), (name, index)


@pytest.mark.parametrize("name", tk.optimizers.names())
def test_every_drawn_optimizer_builds_and_steps(name):
    params = {"w": jnp.ones((4, 3)), "b": jnp.zeros(3)}
    grads = {"w": jnp.full((4, 3), 0.1), "b": jnp.full(3, -0.1)}
    for index in range(1, 3):
        tx = tk.optimizers.get(name, **_drawn("optimizer", name, index))
        updates, _ = tx.update(grads, tx.init(params), params)
        assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates)), name


@pytest.mark.parametrize("name", tk.models.names())
def test_every_drawn_model_builds_and_traces(name):
    x = jnp.zeros((2, 40), jnp.float32)
    keys = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
    for index in range(1, 3):
        model = tk.models.get(name, num_classes=10, **_drawn("model", name, index))
        variables = jax.eval_shape(model.init, keys, x)
        apply = functools.partial(model.apply, train=True, rngs=keys, mutable=["batch_stats"])
        logits, _ = jax.eval_shape(apply, variables, x)
        assert logits.shape == (2, 10), name
