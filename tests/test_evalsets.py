"""The disk cache of shifted test sets (sweeps and tk.evaluate): built once, loaded after, keyed
on data, key and code."""

from __future__ import annotations

import importlib.util
import types
import zlib

import jax
import numpy as np
import pytest

import toolkit as tk
from toolkit import array_cache
from toolkit.data import Split
from toolkit.evaluation import cache as evalsets

KWARGS = {"num_samples": 600}
PAIRS = [["iid_noise", 2], ["translation", 4]]


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    # A folder of this test's own: the sweep's in-process copies are keyed on it too.
    monkeypatch.setenv("TOOLKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv(array_cache.SWITCH, raising=False)
    return tmp_path / "cache"


def count_builds(monkeypatch) -> list[tuple[str, int]]:
    built: list[tuple[str, int]] = []
    build = evalsets.shifted_set

    def counting(split, name, severity, *, key):
        built.append((name, severity))
        return build(split, name, severity, key=key)

    monkeypatch.setattr(evalsets, "shifted_set", counting)
    return built


def shifted(kwargs=KWARGS, pairs=PAIRS):
    """The sweep's shifted sets, as its evaluation builds them (key 0, kept in memory)."""
    test = tk.data.load("mnist1d", **kwargs).test
    pairs = [tuple(p) for p in pairs]
    return evalsets.shifted_sets(test, pairs, key=jax.random.key(0), keep=True)


def test_shifted_sets_are_built_once_then_loaded_with_the_same_arrays(monkeypatch, cache_dir):
    test = tk.data.load("mnist1d", **KWARGS).test
    # Reference: tk.shifts.apply with the key the sweep documents (one fixed key per name).
    expected = [
        np.asarray(
            tk.shifts.apply(
                name,
                test.x,
                key=jax.random.fold_in(jax.random.key(0), zlib.crc32(name.encode())),
                severity=severity,
            )
        )
        for name, severity in PAIRS
    ]
    built = count_builds(monkeypatch)
    first = shifted()
    assert built == [tuple(p) for p in PAIRS]
    assert len(list((cache_dir / "evalsets").glob("*.npz"))) == 2
    assert all(a.x is b.x for a, b in zip(shifted(), first, strict=True))  # kept in memory
    # What a new process does: read the entries back from disk.
    second = evalsets.shifted_sets(test, [tuple(p) for p in PAIRS], key=jax.random.key(0))
    assert len(built) == 2  # nothing built again
    for sets in (first, second):
        for split, x in zip(sets, expected, strict=True):
            np.testing.assert_array_equal(split.x, x)
            np.testing.assert_array_equal(split.y, test.y)


def test_other_test_data_gets_its_own_entries(monkeypatch, cache_dir):
    built = count_builds(monkeypatch)
    shifted()
    shifted(kwargs={"num_samples": 700})
    assert len(built) == 4
    assert len(list((cache_dir / "evalsets").glob("*.npz"))) == 4


def test_the_off_switch_builds_every_time_and_writes_nothing(monkeypatch, cache_dir):
    monkeypatch.setenv(array_cache.SWITCH, "0")
    built = count_builds(monkeypatch)
    test = tk.data.load("mnist1d", **KWARGS).test
    key = jax.random.key(0)
    sets = [evalsets.shifted_sets(test, [("iid_noise", 2)], key=key) for _ in range(2)]
    assert built == [("iid_noise", 2)] * 2 and not cache_dir.exists()
    np.testing.assert_array_equal(sets[0][0].x, sets[1][0].x)


def test_array_fingerprint_sees_values_dtype_and_shape():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    same = evalsets.array_fingerprint(x.copy())
    assert evalsets.array_fingerprint(x) == same
    assert evalsets.array_fingerprint(np.asfortranarray(x)) == same  # values, not layout
    assert evalsets.array_fingerprint(x.reshape(4, 3)) != same
    assert evalsets.array_fingerprint(x.view(np.int32)) != same
    changed = x.copy()
    changed[2, 3] = np.nextafter(changed[2, 3], np.inf)
    assert evalsets.array_fingerprint(changed) != same


@pytest.mark.parametrize(
    ("registry", "fingerprint", "other"),
    [
        (lambda: tk.shifts.shifts, evalsets.shift_code_fingerprint, "iid_noise"),
        (lambda: tk.ood.ood_sets, evalsets.ood_code_fingerprint, "gaussian_noise"),
    ],
    ids=["shift", "ood"],
)
def test_editing_the_module_that_defines_a_set_changes_its_code_fingerprint(
    tmp_path, monkeypatch, registry, fingerprint, other
):
    source = tmp_path / "my_set.py"
    source.write_text("def my_set(x, *, key, **_):\n    return x + 0.1\n")
    spec = importlib.util.spec_from_file_location("my_set", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    entry = registry().entry

    def entry_with_mine(name):
        return types.SimpleNamespace(factory=module.my_set) if name == "mine" else entry(name)

    monkeypatch.setattr(registry(), "entry", entry_with_mine)
    before = fingerprint("mine")
    assert before != fingerprint(other)
    source.write_text("def my_set(x, *, key, **_):\n    return x + 0.2\n")
    assert fingerprint("mine") != before


X = np.random.default_rng(3).normal(size=(40, 40)).astype(np.float32)
Y = (X[:, :20].sum(1) > 0).astype(np.int32)
SHIFTS = ["iid_noise", "translation"]


@pytest.fixture(scope="module")
def small_run():
    return tk.train(
        Split(X, Y), num_classes=2, model="linear", steps=5, batch_size=8, verbose=False
    )


def test_evaluate_reads_shifted_sets_from_the_cache_with_the_same_table(
    small_run, monkeypatch, cache_dir
):
    key = jax.random.key(5)
    uncached = tk.evaluate(
        small_run, Split(X, Y), shifts=SHIFTS, severities=[1, 4], key=key, cache=False
    )
    assert not (cache_dir / "evalsets").exists()  # cache=False writes nothing
    built = count_builds(monkeypatch)
    first = tk.evaluate(small_run, Split(X, Y), shifts=SHIFTS, severities=[1, 4], key=key)
    assert len(built) == 4
    assert len(list((cache_dir / "evalsets").glob("*.npz"))) == 4
    second = tk.evaluate(small_run, Split(X, Y), shifts=SHIFTS, severities=[1, 4], key=key)
    assert len(built) == 4  # loaded, not built
    for table in (first, second):
        assert table.equals(uncached)
    # The rows are those of the shifted inputs tk.shifts gives with the documented key.
    x = np.asarray(
        tk.shifts.apply(
            "translation", X, key=jax.random.fold_in(key, zlib.crc32(b"translation")), severity=4
        )
    )
    expected = np.mean(np.asarray(small_run.apply(x)).argmax(-1) == Y)
    row = first[(first.eval_set == "translation") & (first.severity == 4)]
    assert row.accuracy.item() == pytest.approx(expected)


def test_evaluate_cache_keys_on_the_prng_key(small_run, cache_dir):
    for seed in (0, 1, 1):
        key = jax.random.key(seed)
        tk.evaluate(small_run, Split(X, Y), shifts=["iid_noise"], severities=[2], key=key)
    assert len(list((cache_dir / "evalsets").glob("*.npz"))) == 2


def test_cached_shifted_sets_carry_the_callers_labels(cache_dir):
    key = jax.random.key(0)
    (first,) = evalsets.shifted_sets(Split(X, Y), [("iid_noise", 2)], key=key)
    (relabelled,) = evalsets.shifted_sets(Split(X, 1 - Y), [("iid_noise", 2)], key=key)
    assert len(list((cache_dir / "evalsets").glob("*.npz"))) == 1  # same inputs, one entry
    np.testing.assert_array_equal(relabelled.x, first.x)
    np.testing.assert_array_equal(first.y, Y)
    np.testing.assert_array_equal(relabelled.y, 1 - Y)


def test_a_sweep_and_tk_evaluate_with_the_default_key_share_entries(monkeypatch, cache_dir):
    built = count_builds(monkeypatch)
    shifted()  # the sweep's sets: key 0 (EVAL_KEY_SEED)
    dataset = tk.data.load("mnist1d", **KWARGS)
    run = tk.train(dataset, model="linear", steps=2, batch_size=48, verbose=False)
    tk.evaluate(run, dataset.test, shifts=["iid_noise"], severities=[2])
    assert built == [tuple(p) for p in PAIRS]  # iid_noise@2 was read from the sweep's entry


def test_ood_sets_are_built_once_then_read_and_equal_load_ood(monkeypatch, cache_dir):
    calls = []
    load = tk.ood.load_ood

    def counting(name, like, **kwargs):
        calls.append(name)
        return load(name, like, **kwargs)

    monkeypatch.setattr(tk.ood, "load_ood", counting)
    key = jax.random.key(4)
    first = evalsets.ood_set("mnist1d_unseen_templates", (40,), key=key, num=30)
    again = evalsets.ood_set("mnist1d_unseen_templates", (40,), key=jax.random.key(4), num=30)
    other = evalsets.ood_set("mnist1d_unseen_templates", (40,), key=jax.random.key(5), num=30)
    assert calls == ["mnist1d_unseen_templates"] * 2  # key 4 once (then read), key 5 once
    assert len(list((cache_dir / "evalsets").glob("*.npz"))) == 2 + 1  # and the raw stats
    np.testing.assert_array_equal(again, first)
    np.testing.assert_array_equal(first, load("mnist1d_unseen_templates", (40,), key=key, num=30))
    assert not np.array_equal(first, other)


def test_an_unwritable_cache_folder_warns_and_still_evaluates(small_run, tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv("TOOLKIT_CACHE_DIR", str(blocker / "cache"))  # under a file: no folder
    kwargs = {"shifts": SHIFTS, "severities": [3], "key": jax.random.key(2)}
    with pytest.warns(UserWarning, match="could not cache evaluation sets"):
        table = tk.evaluate(small_run, Split(X, Y), **kwargs)
    assert table.equals(tk.evaluate(small_run, Split(X, Y), cache=False, **kwargs))


def test_regenerated_sets_are_cached_and_rebuilt_when_the_generator_changes(monkeypatch):
    from toolkit.data import mnist1d_raw
    from toolkit.evaluation import regenerated
    from toolkit.evaluation.sets import Regenerated

    built = []
    build = regenerated.mnist1d_shifted_test

    def counting(kind, severity, **kwargs):
        built.append((kind, severity))
        return build(kind, severity, **kwargs)

    monkeypatch.setattr(regenerated, "mnist1d_shifted_test", counting)
    spec = Regenerated("iid_noise", 2, generator_args={"num_samples": 200})

    def sets():
        return Regenerated.build_all([spec], None, key=None, cache=True, keep=False)

    first = sets()
    assert built == [("iid_noise", 2)]
    np.testing.assert_array_equal(sets()[0].x, first[0].x)  # read back, not built
    assert len(built) == 1
    # Reference: the generator's own draw with the shifted argument, standardized by the
    # clean set's raw statistics.
    mean, std = mnist1d_raw.raw_stats(num_samples=200)
    raw = mnist1d_raw.raw_mnist1d(num_samples=200, iid_noise_scale=0.06)
    np.testing.assert_allclose(first[0].x, (raw.x[raw.num_train :] - mean) / std, rtol=1e-6)
    changed = {**mnist1d_raw.generator_fingerprint(), "code": "edited"}
    monkeypatch.setattr(mnist1d_raw, "generator_fingerprint", lambda: changed)
    sets()
    assert len(built) == 2  # a changed generator is another entry
