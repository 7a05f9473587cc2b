"""Bad training data (issue #27, point 4): a Split refuses labels that are not whole
numbers (they were truncated) and unsigned integer images (they were used unscaled, 0-255).
"""

import numpy as np
import pytest

import toolkit as tk
from toolkit.data import Split

NUM_CLASSES = 10
N = 60  # 6 examples of each class, in the order 0, 1, ..., 9, 0, 1, ...


def clean(shape=(40,)):
    x = np.random.default_rng(0).normal(size=(N, *shape)).astype(np.float32)
    return x, np.arange(N, dtype=np.int32) % NUM_CLASSES


def assert_names(error, fragments):
    message = str(error.value)
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_split_refuses_fractional_float_labels_and_reads_whole_ones():
    x, y = clean()
    labels = y.astype(np.float64)
    labels[[2, 9]] = [2.5, 7.25]
    with pytest.raises(ValueError) as error:
        Split(x, labels)
    assert_names(error, ["2 non-integral", "y[2] = 2.5", "integer labels"])
    with pytest.raises(ValueError, match=r"y\[0\] = nan"):
        Split(x, np.full(N, np.nan))
    whole = Split(x, y.astype(np.float32))
    np.testing.assert_array_equal(whole.y, np.arange(N) % NUM_CLASSES)
    assert whole.y.dtype == np.int32


@pytest.mark.parametrize("dtype, divisor", [(np.uint8, "255"), (np.uint16, "65535")])
def test_split_refuses_unscaled_integer_images(dtype, divisor):
    x = np.full((N, 8, 8, 1), 200, dtype)
    with pytest.raises(TypeError) as error:
        Split(x, np.arange(N) % NUM_CLASSES)
    assert_names(error, [np.dtype(dtype).name, f"x.astype(np.float32) / {divisor}"])


def test_registered_datasets_load_as_floats_in_unit_range():
    """The toolkit's image datasets are stored as uint8 and still load, scaled to [0, 1]."""
    dataset = tk.data.load("digits")
    assert dataset.train.x.dtype == np.float32
    assert 0.0 <= dataset.train.x.min() and dataset.train.x.max() == 1.0
