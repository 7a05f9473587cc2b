"""The generic registry: defaults, overrides, and the errors researchers see on typos; and
the same functions on every registry module (tk.models, tk.losses, ..., tk.ood)."""

import contextlib
import functools

import pytest

from toolkit.registry import InvalidHyperparameterError, Registry, UnknownNameError


def make_registry():
    reg = Registry("loss", build=functools.partial)

    @reg.register("focal", description="A focal loss.")
    def focal(logits, labels, *, gamma=2.0, alpha=None):
        return (logits, labels, gamma, alpha)

    reg.add("plain", lambda logits, labels: 0, description="No hyperparameters.")
    return reg


def test_defaults_come_from_keyword_parameters_and_overrides_win():
    reg = make_registry()
    assert reg.entry("focal").defaults == {"gamma": 2.0, "alpha": None}
    assert reg.entry("plain").defaults == {}
    fn = reg.get("focal", gamma=0.5)
    assert fn(1, 2) == (1, 2, 0.5, None)
    assert reg.hparams("focal", alpha=0.25) == {"gamma": 2.0, "alpha": 0.25}


def test_names_keep_registration_order_and_membership():
    reg = make_registry()
    assert reg.names() == ["focal", "plain"]
    assert "focal" in reg and "nope" not in reg
    assert len(reg) == 2 and list(reg) == ["focal", "plain"]


def test_unknown_name_lists_valid_names_and_closest_match():
    reg = make_registry()
    with pytest.raises(UnknownNameError) as err:
        reg.get("focl")
    msg = str(err.value)
    assert "'focl'" in msg and "Did you mean 'focal'?" in msg and "focal, plain" in msg
    with pytest.raises(ValueError, match="Valid loss names: focal, plain"):
        reg.get("zzz")


def test_unknown_hyperparameter_lists_valid_ones():
    reg = make_registry()
    with pytest.raises(InvalidHyperparameterError) as err:
        reg.get("focal", gama=1.0)
    msg = str(err.value)
    assert "'gama'" in msg and "Did you mean 'gamma'?" in msg and "alpha, gamma" in msg


def test_duplicate_and_missing_description_are_rejected():
    reg = make_registry()
    with pytest.raises(ValueError, match="already registered"):
        reg.add("focal", lambda: 0, description="again")
    with pytest.raises(ValueError, match="one-line description"):
        reg.add("x", lambda: 0, description="")


def test_default_build_calls_the_factory_and_meta_is_kept():
    reg = Registry("thing")
    reg.add("pair", lambda a=1, b=2: (a, b), description="A pair.", meta={"rank": 2})
    assert reg.get("pair", b=5) == (1, 5)
    assert reg.entry("pair").meta == {"rank": 2}
    assert "pair" in reg.describe()


# -- every public registry module: one API ------------------------------------------------
# tk.<module> -> the attribute holding its Registry. The module's functions must act on it.
REGISTRY_MODULES = {
    "models": "models",
    "losses": "losses",
    "optimizers": "optimizers",
    "schedules": "schedules",
    "data": "datasets",
    "shifts": "shifts",
    "ood": "ood_sets",
    "augment": "augmentations",
}
FUNCTIONS = ("names", "get", "entry", "hparams", "describe", "register")


def _module(name):
    import toolkit as tk

    return getattr(tk, name)


@contextlib.contextmanager
def scratch_entries(module_name):
    """Gives a registry module's Registry a copy of its entries while the block runs; the
    original dict is put back afterwards, so what the block registers does not leak."""
    registry = getattr(_module(module_name), REGISTRY_MODULES[module_name])
    assert isinstance(registry, Registry)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(registry, "_entries", dict(registry._entries))
        yield


@pytest.mark.parametrize("module_name", REGISTRY_MODULES)
def test_every_registry_module_has_the_same_functions(module_name):
    module = _module(module_name)
    missing = [f for f in FUNCTIONS if not callable(getattr(module, f, None))]
    assert not missing, f"tk.{module_name} lacks {missing}"
    assert set(FUNCTIONS) <= set(module.__all__)


@pytest.mark.parametrize("module_name", REGISTRY_MODULES)
def test_names_entries_and_describe_agree(module_name):
    module = _module(module_name)
    names = module.names()
    assert isinstance(names, list) and names and all(isinstance(n, str) for n in names)
    assert len(set(names)) == len(names)
    for name in names:
        entry = module.entry(name)
        assert entry.name == name and entry.description
        assert module.hparams(name) == dict(entry.defaults)
    # One row per entry, starting with its name (a substring test would let "adam" pass
    # for "adamw").
    rows = module.describe().splitlines()
    assert [row.split()[0] for row in rows] == names


@pytest.mark.parametrize("module_name", REGISTRY_MODULES)
def test_get_and_entry_of_an_unknown_name_name_it_and_the_valid_ones(module_name):
    module = _module(module_name)
    bad = "no_such_entry_xyz"
    for lookup in (module.get, module.entry):
        with pytest.raises(UnknownNameError) as err:
            lookup(bad)
        msg = str(err.value)
        assert repr(bad) in msg
        assert all(name in msg for name in module.names()), msg


# What each module's register takes, an entry of that kind with one hyperparameter, and a
# check of what get builds with that hyperparameter overridden (hand-computed values).
def _new_model(module, name):
    import flax.linen as nn

    @module.register(name, description="A test model.")
    class Tiny(nn.Module):
        num_classes: int = 10
        width: int = 3

        @nn.compact
        def __call__(self, x, *, train: bool = False):
            return nn.Dense(self.num_classes)(x)

    def check(built):
        assert isinstance(built, Tiny) and built.width == 5 and built.num_classes == 10

    return {"num_classes": 10, "width": 3}, {"width": 5}, check


def _new_loss(module, name):
    import numpy as np

    @module.register(name, description="A test loss.")
    def scaled(logits, labels, *, scale=2.0):
        return scale * logits[np.arange(len(labels)), labels]

    def check(built):
        logits, labels = np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([1, 0])
        np.testing.assert_allclose(built(logits, labels), [6.0, 9.0])

    return {"scale": 2.0}, {"scale": 3.0}, check


def _new_optimizer(module, name):
    import numpy as np
    import optax

    @module.register(name, weight_decay="l2", description="A test optimizer.")
    def plain_sgd(*, learning_rate=0.1, weight_decay=0.0, nesterov=False):
        return optax.sgd(learning_rate, nesterov=nesterov)

    def check(built):
        params = {"w": np.ones(2, np.float32)}
        updates, _ = built.update({"w": np.array([1.0, -2.0], np.float32)}, built.init(params))
        np.testing.assert_allclose(updates["w"], [-0.5, 1.0])

    # Its own keywords, then the options every optimizer takes (tk.optimizers' docstring).
    defaults = {"learning_rate": 0.1, "weight_decay": 0.0, "nesterov": False}
    defaults |= {"schedule": "constant", "schedule_hparams": None, "total_steps": None}
    defaults |= {"warmup_steps": 0, "grad_clip": None}
    return defaults, {"learning_rate": 0.5}, check


def _new_schedule(module, name):
    import numpy as np
    import optax

    @module.register(name, decays=False, description="A test schedule.")
    def halved(*, learning_rate=1.0, total_steps=None, warmup_steps=0, factor=0.5):
        return optax.constant_schedule(learning_rate * factor)

    def check(built):
        np.testing.assert_allclose(float(built(3)), 0.4 * 0.25)

    defaults = {"learning_rate": 1.0, "total_steps": None, "warmup_steps": 0, "factor": 0.5}
    return defaults, {"learning_rate": 0.4, "factor": 0.25}, check


def _new_dataset(module, name):
    import numpy as np

    @module.register(name, description="A test dataset.")
    def tiny(*, num=4):
        split = module.Split(np.zeros((num, 3)), np.arange(num) % 2)
        return module.Dataset(name, split, split, num_classes=2, class_names=("a", "b"))

    def check(built):
        assert built.name == name and len(built.train) == 6

    return {"num": 4}, {"num": 6}, check


def _new_shift(module, name):
    import numpy as np

    @module.register(name, applies_to="image", description="A test shift.")
    def dim(x, *, key, severity, factor=0.5):
        return x * factor**severity

    def check(built):
        np.testing.assert_allclose(built(np.ones((1, 2, 2, 1)), key=None, severity=2), 0.01)

    return {"factor": 0.5}, {"factor": 0.1}, check


def _new_augmentation(module, name):
    import numpy as np

    @module.register(name, applies_to=("image",), views=1, description="A test augmentation.")
    def dim(x, *, key, factor=0.5):
        return (x * factor)[None]

    def check(built):
        np.testing.assert_allclose(built(np.ones((1, 2, 2, 1)), key=None), 0.1)

    return {"factor": 0.5}, {"factor": 0.1}, check


def _new_ood_set(module, name):
    import numpy as np

    @module.register(name, applies_to=("image",), description="A test OOD set.")
    def constant(shape, *, key, num, level=0.5):
        return np.full((num, *shape), level, np.float32)

    def check(built):
        np.testing.assert_array_equal(
            built((2, 2, 1), key=None, num=3), np.full((3, 2, 2, 1), 0.75)
        )

    return {"level": 0.5}, {"level": 0.75}, check


NEW_ENTRY = {
    "models": _new_model,
    "losses": _new_loss,
    "optimizers": _new_optimizer,
    "schedules": _new_schedule,
    "data": _new_dataset,
    "shifts": _new_shift,
    "ood": _new_ood_set,
    "augment": _new_augmentation,
}


@pytest.mark.parametrize("module_name", REGISTRY_MODULES)
def test_register_adds_an_entry_that_every_function_then_knows(module_name):
    module = _module(module_name)
    before = module.names()
    name = f"test_{module_name}_entry"
    with scratch_entries(module_name):
        defaults, overrides, check = NEW_ENTRY[module_name](module, name)
        assert module.names() == [*before, name]
        assert module.entry(name).name == name
        assert dict(module.entry(name).defaults) == defaults
        assert module.hparams(name, **overrides) == {**defaults, **overrides}
        assert module.describe().splitlines()[-1].split()[0] == name
        check(module.get(name, **overrides))
        # The same definition run again (a re-run notebook cell) replaces its entry...
        NEW_ENTRY[module_name](module, name)
        assert module.names() == [*before, name]
        # ... a different one may not take the name.
        registry = getattr(module, REGISTRY_MODULES[module_name])
        with pytest.raises(ValueError, match=f"'{name}' is already registered \\(by test_registry"):
            registry.add(name, lambda **kw: None, description="Another definition.")
    assert module.names() == before


def test_readme_names_every_registry_module_and_function():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start = readme.index("Every registry module")
    claim = readme[start : readme.index("\n\n", start)]
    for module_name in REGISTRY_MODULES:
        assert f"`tk.{module_name}`" in claim, module_name
    for function in FUNCTIONS:
        assert f"`{function}" in claim, function


def test_a_notebook_cell_run_again_replaces_its_registration():
    """A cell that registers a loss, run twice (the second time with a fixed default), as a
    kernel runs it: in ``__main__``, where each run makes a new function object."""
    import toolkit as tk

    cell = (
        "import toolkit as tk\n"
        "@tk.losses.register('cell_loss', description='A loss from a notebook cell.')\n"
        "def cell_loss(logits, labels, *, scale={scale}):\n"
        "    return scale * tk.losses.get('softmax_cross_entropy')(logits, labels)\n"
    )
    with scratch_entries("losses"):
        namespace = {"__name__": "__main__"}
        exec(cell.format(scale=1.0), namespace)
        exec(cell.format(scale=2.0), namespace)
        assert tk.losses.names().count("cell_loss") == 1
        assert tk.losses.hparams("cell_loss") == {"scale": 2.0}
        with pytest.raises(
            ValueError, match=r"'softmax_focal' is already registered \(by toolkit.losses"
        ):
            exec(cell.replace("cell_loss'", "softmax_focal'").format(scale=1.0), namespace)
