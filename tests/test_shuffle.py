"""toolkit.shuffle against JAX's own permutation and numpy's stable argsort."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from toolkit import shuffle


# 1625 / 1626 straddle JAX's switch from one sorting round to two; 60,000 is MNIST's size.
@pytest.mark.parametrize("n", [0, 1, 2, 7, 100, 1625, 1626, 4000, 60_000])
def test_permutation_is_jax_random_permutation(n):
    for seed in range(3):
        key = jax.random.key(seed)
        np.testing.assert_array_equal(
            shuffle.permutation(key, n), jax.random.permutation(key, n), err_msg=f"seed {seed}"
        )


def test_permutation_matches_under_jit_and_vmap():
    # How the trainer calls it: one permutation per epoch key, vmapped, inside jit.
    data_key = jax.random.key(11)
    epochs = jnp.arange(5)
    ours = jax.jit(jax.vmap(lambda e: shuffle.permutation(jax.random.fold_in(data_key, e), 300)))(
        epochs
    )
    for e in range(5):
        want = jax.random.permutation(jax.random.fold_in(data_key, e), 300)
        np.testing.assert_array_equal(ours[e], want)
    assert ours.dtype == jnp.int32


@pytest.mark.parametrize(
    "keys",
    [
        np.random.default_rng(0).integers(0, 3, 500, dtype=np.int32),  # 3 groups of ties
        np.random.default_rng(1).integers(0, 60, 2000, dtype=np.int32),  # groups of about 33
        np.random.default_rng(2).integers(0, 2**32, 3000, dtype=np.uint32),  # like the shuffle's
        np.zeros(17, np.int32),  # one group: the tie pass runs 17 times
        np.arange(40, 0, -1, dtype=np.int32),
        np.arange(40, dtype=np.int32),
        np.array([-5, 3, -5, 2**31 - 1, -(2**31), 3, 0], np.int32),
        np.array([7], np.uint32),
    ],
    ids=["3-values", "60-values", "uint32", "all-equal", "descending", "sorted", "int32", "one"],
)
def test_stable_argsort_is_numpy_stable_argsort(keys):
    got = jax.jit(shuffle.stable_argsort)(jnp.asarray(keys))
    np.testing.assert_array_equal(got, np.argsort(keys, kind="stable"))


def test_stable_argsort_under_vmap():
    keys = np.random.default_rng(3).integers(0, 5, (4, 50)).astype(np.int32)
    got = jax.vmap(shuffle.stable_argsort)(jnp.asarray(keys))
    np.testing.assert_array_equal(got, np.argsort(keys, axis=1, kind="stable"))


@pytest.mark.parametrize("n", [-1, 2.0, True, "8"])
def test_bad_n_is_named(n):
    with pytest.raises(ValueError, match=f"n must be a non-negative int, got {n!r}"):
        shuffle.permutation(jax.random.key(0), n)


@pytest.mark.parametrize(
    "keys", [jnp.zeros((2, 3), jnp.int32), jnp.zeros(3, jnp.float32)], ids=["2-d", "float"]
)
def test_bad_keys_are_named(keys):
    with pytest.raises(ValueError, match="keys must be a 1-D integer array, got"):
        shuffle.stable_argsort(keys)


def _stream(key, n, epochs):
    """The documented batch stream, from JAX's own permutation: perm(0) ++ perm(1) ++ ..."""
    return np.concatenate([jax.random.permutation(jax.random.fold_in(key, e), n) for e in epochs])


def test_epoch_permutations_feed_chunks_the_stream_and_draw_each_epoch_once():
    key, n, batch = jax.random.key(4), 70, 20  # 3.5 batches per epoch
    epochs = shuffle.EpochPermutations(key, n, batch)
    drawn = []
    draw = epochs._draw
    epochs._draw = lambda k, epoch: drawn.append(int(epoch)) or draw(k, epoch)
    stream = _stream(key, n, range(8))
    step = 3  # as a resumed run starts
    for steps in (4, 4, 1, 9, 2):  # chunk lengths vary, as the trainer's last chunk does
        perms = epochs.for_chunk(step, steps)
        assert len(perms) == shuffle.epochs_per_chunk(steps, batch, n)
        got = shuffle.chunk_indices(jnp.stack(perms), step, steps, batch)
        want = stream[step * batch : (step + steps) * batch].reshape(steps, batch)
        np.testing.assert_array_equal(got, want, err_msg=f"chunk at step {step}")
        np.testing.assert_array_equal(got, shuffle.batch_indices(key, step, steps, batch, n))
        step += steps
    # Steps 3..22 touch epochs 0..6 (and the last chunk may reach into 7): each drawn once,
    # in order; the last chunk starts in epoch 6 (step 21 x 20 // 70), so nothing older is kept.
    assert drawn == list(range(8))
    assert sorted(epochs._drawn) == [6, 7]


def test_epoch_permutations_of_a_population_are_each_members_stream():
    keys = jax.random.split(jax.random.key(9), 3)
    n, batch, steps = 50, 15, 7
    perms = shuffle.EpochPermutations(keys, n, batch).for_chunk(2, steps)
    assert all(p.shape == (3, n) for p in perms)
    got = jax.vmap(lambda p: shuffle.chunk_indices(p, 2, steps, batch), in_axes=1)(jnp.stack(perms))
    for k in range(3):
        want = _stream(keys[k], n, range(4))[2 * batch : (2 + steps) * batch]
        np.testing.assert_array_equal(got[k], want.reshape(steps, batch), err_msg=f"member {k}")
