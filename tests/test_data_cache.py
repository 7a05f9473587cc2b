"""Loaded datasets cached on disk (toolkit.data.cache over toolkit.array_cache).

References: the MNIST-1D generator's own arrays (``mnist1d.data.make_dataset``) and
scikit-learn's 8x8 digits (integers 0..16), never a second call of the cached path.
"""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

import toolkit.data as tkd
from toolkit import array_cache
from toolkit.data import cache as data_cache
from toolkit.data import tfds_read, tfds_source


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("TOOLKIT_CACHE_DIR", str(root))
    monkeypatch.delenv(array_cache.SWITCH, raising=False)
    return root / data_cache.KIND


@pytest.fixture
def decodes(monkeypatch):
    """Counts the splits read from TFDS's files (each read decodes its examples)."""
    calls = []
    original = tfds_read._collect

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(tfds_read, "_collect", counting)
    return calls


def entries(folder):
    return sorted(folder.glob("*.npz")) if folder.exists() else []


def test_second_load_reads_the_cached_arrays_instead_of_decoding(
    cache, decodes, tmp_path, mnist1d_reference
):
    data_dir = str(tmp_path / "tfds")
    first = tkd.load("mnist1d", data_dir=data_dir, max_examples=300)
    assert len(decodes) == 2 and len(entries(cache)) == 1  # train and test, in one entry
    second = tkd.load("mnist1d", data_dir=data_dir, max_examples=300)
    assert len(decodes) == 2  # nothing decoded again
    ref = mnist1d_reference
    for ds in (first, second):
        np.testing.assert_array_equal(ds.train.x, ref["x"][:300].astype(np.float32))
        np.testing.assert_array_equal(ds.train.y, ref["y"][:300])
        np.testing.assert_array_equal(ds.test.x, ref["x_test"][:300].astype(np.float32))
        assert ds.train.x.dtype == np.float32 and ds.train.y.dtype == np.int32
    assert second.info == first.info  # provenance does not say where the arrays came from
    tkd.load("mnist1d", data_dir=data_dir, max_examples=200)  # another read: its own entry
    assert len(decodes) == 4 and len(entries(cache)) == 2


def test_a_new_process_reads_a_toolkit_dataset_back_without_importing_tfds(
    cache, tmp_path, mnist1d_reference
):
    data_dir = str(tmp_path / "tfds")
    first = tkd.load("mnist1d", data_dir=data_dir, max_examples=300)
    script = f"""
import json, sys
import numpy as np
import toolkit.data as tkd
ds = tkd.load("mnist1d", data_dir={data_dir!r}, max_examples=300)
assert "tensorflow_datasets" not in sys.modules, "TFDS was imported"
np.savez({str(tmp_path / "read.npz")!r}, x=ds.train.x, y=ds.train.y, x_test=ds.test.x)
print(json.dumps([ds.name, ds.num_classes, list(ds.class_names), ds.info]))
"""
    env = {**os.environ, "TOOLKIT_CACHE_DIR": str(cache.parent)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    name, num_classes, class_names, info = json.loads(done.stdout.strip().splitlines()[-1])
    assert (name, num_classes, tuple(class_names)) == (
        first.name, first.num_classes, first.class_names
    )  # fmt: skip
    assert info == json.loads(json.dumps(first.info)) and info["max_examples"] == 300
    read, ref = np.load(tmp_path / "read.npz"), mnist1d_reference
    np.testing.assert_array_equal(read["x"], ref["x"][:300].astype(np.float32))
    np.testing.assert_array_equal(read["y"], ref["y"][:300])
    np.testing.assert_array_equal(read["x_test"], ref["x_test"][:300].astype(np.float32))


def test_a_relative_data_dir_is_the_one_under_the_current_directory(cache, tmp_path, monkeypatch):
    first, second = tmp_path / "a", tmp_path / "b"
    for folder in (first, second):
        folder.mkdir()
        monkeypatch.chdir(folder)
        ds = tkd.load("digits", data_dir="tfds", max_examples=30)
        assert (folder / "tfds" / "digits").is_dir()  # prepared here, not read from a/
        assert len(ds.train) == 30
    assert len(entries(cache)) == 2


def test_integer_images_are_stored_as_decoded_and_scaled_on_every_load(cache, tmp_path):
    from sklearn.datasets import load_digits

    data_dir = str(tmp_path / "tfds")
    loads = [tkd.load("digits", data_dir=data_dir) for _ in range(2)]
    (stored,) = [array_cache.load(path, ("train_x", "test_x")) for path in entries(cache)]
    assert {a.dtype for a in stored.values()} == {np.dtype(np.uint8)}  # as TFDS stores them
    pixels = np.sort(load_digits().images.reshape(-1))
    for ds in loads:
        x = np.concatenate([ds.train.x, ds.test.x]).reshape(-1)
        np.testing.assert_array_equal(np.sort(x) * 16, pixels)  # scaled by 1/16 each time
        assert len(ds.train) == 1437 and len(ds.test) == 360


def test_preparing_the_files_again_invalidates_the_entry(cache, decodes, tmp_path):
    data_dir = tmp_path / "tfds"
    tkd.load("digits", data_dir=str(data_dir))
    prepared = data_dir / "digits" / "default" / "1.0.0"
    record = next(prepared.glob("digits-test.array_record-*"))
    stat = record.stat()
    os.utime(record, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # rewritten in place
    tkd.load("digits", data_dir=str(data_dir))
    assert len(decodes) == 4 and len(entries(cache)) == 1  # read again, entry rewritten
    tkd.load("digits", data_dir=str(data_dir))
    assert len(decodes) == 4  # the rewritten entry records the files as they are now


def test_a_damaged_entry_is_decoded_again_and_rewritten(cache, decodes, tmp_path):
    data_dir = str(tmp_path / "tfds")
    clean = tkd.load("digits", data_dir=data_dir, max_examples=50)
    (path,) = entries(cache)
    path.write_bytes(path.read_bytes()[:100])  # cut short
    again = tkd.load("digits", data_dir=data_dir, max_examples=50)
    assert len(decodes) == 4
    np.testing.assert_array_equal(again.train.x, clean.train.x)
    assert entries(cache) == [path] and array_cache.load(path, ("train_x",)) is not None
    tkd.load("digits", data_dir=data_dir, max_examples=50)
    assert len(decodes) == 4


def test_mock_data_and_the_off_switch_cache_nothing(cache, decodes, tmp_path, monkeypatch):
    # USE_FILES over a real prepared dataset: the files exist but the mock serves random
    # examples, which must never be stored under those files' key.
    data_dir = str(tmp_path / "tfds")
    tkd.load("digits", data_dir=data_dir)
    for path in entries(cache):
        path.unlink()
    with tfds.testing.mock_data(num_examples=5, policy=tfds.testing.MockPolicy.USE_FILES,
                                data_dir=data_dir):  # fmt: skip
        mocked = tkd.load("digits", data_dir=data_dir)
    assert len(mocked.test) == 5 and entries(cache) == []
    monkeypatch.setenv(array_cache.SWITCH, "0")
    tkd.load("digits", data_dir=data_dir)
    tkd.load("digits", data_dir=data_dir)
    assert entries(cache) == [] and len(decodes) == 2 + 2 + 4


def test_an_unwritable_cache_warns_and_still_returns_the_data(cache, tmp_path, monkeypatch):
    def refuse(path, **arrays):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(array_cache, "save", refuse)
    with pytest.warns(UserWarning) as warned:
        ds = tkd.load("digits", data_dir=str(tmp_path / "tfds"), max_examples=20)
    pattern = re.compile(r"could not cache the (.+?) in .*Permission denied")
    kinds = [m.group(1) if (m := pattern.match(str(w.message))) else str(w.message) for w in warned]
    assert kinds == ["dataset"], kinds  # the one entry not written says so
    assert len(ds.train) == 20 and entries(cache) == []


def test_a_tfds_name_goes_through_the_same_cache_resized_images_too(cache, decodes, tmp_path):
    from PIL import Image
    from sklearn.datasets import load_digits

    data_dir = str(tmp_path / "tfds")
    tkd.load("digits", data_dir=data_dir)  # prepares the builder, which TFDS also knows by name
    loads = [tfds_source.load("digits", data_dir=data_dir, image_size=(4, 4)) for _ in range(2)]
    assert len(decodes) == 2 + 2 and len(entries(cache)) == 2  # the TFDS name's load: once
    # Reference: every digit resized by PIL (bilinear), then scaled by 1/16.
    images = load_digits().images.astype(np.uint8)
    resized = [
        np.asarray(Image.fromarray(i).resize((4, 4), Image.Resampling.BILINEAR)) for i in images
    ]
    expected = np.sort(np.asarray(resized, np.float32).reshape(-1) / np.float32(16))
    for ds in loads:
        x = np.concatenate([ds.train.x, ds.test.x])
        assert x.shape == (1797, 4, 4, 1) and ds.info["image_size"] == [4, 4]
        np.testing.assert_array_equal(np.sort(x.reshape(-1)), expected)


def test_array_cache_writes_whole_entries_or_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("TOOLKIT_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv(array_cache.SWITCH, raising=False)
    path = array_cache.entry_path("kind", {"b": 1, "a": [2, 3]})
    assert path == array_cache.entry_path("kind", {"a": [2, 3], "b": 1})  # key order ignored
    assert path.parent == tmp_path / "kind" and array_cache.load(path, ("x",)) is None
    x = np.arange(6, dtype=np.uint8).reshape(2, 3)
    array_cache.save(path, x=x)
    np.testing.assert_array_equal(array_cache.load(path, ("x",))["x"], x)
    assert array_cache.load(path, ("x", "y")) is None  # an entry without 'y' is incomplete

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", fail)
    other = array_cache.entry_path("kind", {"c": 1})
    with pytest.raises(OSError, match="disk full"):
        array_cache.save(other, x=x)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary file
    for off in ("0", "off", "False"):
        monkeypatch.setenv(array_cache.SWITCH, off)
        assert array_cache.entry_path("kind", {"b": 1, "a": [2, 3]}) is None
        assert array_cache.load(None, ("x",)) is None and array_cache.location() is None
