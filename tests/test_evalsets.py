"""The sweep's disk cache of shifted test sets: built once, loaded after, keyed on data and code."""

from __future__ import annotations

import importlib.util
import json
import types
import zlib

import jax
import numpy as np
import pytest

import toolkit as tk
from toolkit.sweep import evals, evalsets

KWARGS = {"num_samples": 600}
PAIRS = [["iid_noise", 2], ["translation", 4]]


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TOOLKIT_CACHE_DIR", str(tmp_path / "cache"))
    evals._shifted_sets.cache_clear()
    yield tmp_path / "cache"
    evals._shifted_sets.cache_clear()


def count_builds(monkeypatch) -> list[tuple[str, int]]:
    built: list[tuple[str, int]] = []
    build = evals._shift

    def counting(test, shift, severity, **spec):
        built.append((shift, severity))
        return build(test, shift, severity, **spec)

    monkeypatch.setattr(evals, "_shift", counting)
    return built


def shifted(kwargs=KWARGS, pairs=PAIRS):
    return evals._shifted_sets("mnist1d", json.dumps(kwargs, sort_keys=True), json.dumps(pairs))


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
    evals._shifted_sets.cache_clear()  # as a new process would start
    second = shifted()
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


def test_editing_the_module_that_defines_a_shift_changes_its_code_fingerprint(
    tmp_path, monkeypatch
):
    source = tmp_path / "my_shift.py"
    source.write_text("def my_shift(x, *, key, severity):\n    return x + 0.1 * severity\n")
    spec = importlib.util.spec_from_file_location("my_shift", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    entry = tk.shifts.shifts.entry

    def entry_with_mine(name):
        return types.SimpleNamespace(factory=module.my_shift) if name == "mine" else entry(name)

    monkeypatch.setattr(tk.shifts.shifts, "entry", entry_with_mine)
    evalsets.shift_code_fingerprint.cache_clear()
    before = evalsets.shift_code_fingerprint("mine")
    assert before != evalsets.shift_code_fingerprint("iid_noise")
    source.write_text("def my_shift(x, *, key, severity):\n    return x + 0.2 * severity\n")
    evalsets.shift_code_fingerprint.cache_clear()
    assert evalsets.shift_code_fingerprint("mine") != before
    evalsets.shift_code_fingerprint.cache_clear()
