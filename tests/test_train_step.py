"""The pure train step: its divergence test and the size of the program it compiles to."""

from __future__ import annotations

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from toolkit import optimizers
from toolkit.train_step import gradient_norm, init_state, make_run_chunk, make_train_step

LOSS = optax.losses.softmax_cross_entropy_with_integer_labels
X = np.random.default_rng(0).normal(size=(16, 5)).astype(np.float32)
Y = np.arange(16, dtype=np.int32) % 4


class Deep(nn.Module):
    """``depth`` hidden Dense layers: 2 * (depth + 1) parameter leaves."""

    depth: int

    @nn.compact
    def __call__(self, x, *, train=False):
        for _ in range(self.depth):
            x = nn.relu(nn.Dense(8)(x))
        return nn.Dense(4)(x)


class SqrtAtZero(nn.Module):
    """Finite logits whose gradient is infinite: d sqrt(w) / dw at w = 0."""

    @nn.compact
    def __call__(self, x, *, train=False):
        w = self.param("w", nn.initializers.zeros_init(), (4,))
        return nn.Dense(4)(x) + jnp.sqrt(w)


def test_gradient_norm_matches_numpy_and_sums_in_float32():
    rng = np.random.default_rng(1)
    leaves = [rng.normal(size=(3, 4)), rng.normal(size=7), np.full(2, 300.0)]
    expected = np.linalg.norm(np.concatenate([np.ravel(x) for x in leaves]))
    tree = {"a": jnp.asarray(leaves[0], jnp.float32), "b": [jnp.asarray(leaves[1], jnp.float32)]}
    # 300^2 overflows float16 (max 65504); the norm must not.
    tree["b"].append(jnp.asarray(leaves[2], jnp.float16))
    norm = gradient_norm(tree)
    assert norm.dtype == jnp.float32
    np.testing.assert_allclose(norm, expected, rtol=1e-6)


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan, 3e19])
def test_gradient_norm_is_not_finite_for_any_bad_element(bad):
    tree = [jnp.ones(5), jnp.asarray([1.0, bad, 2.0], jnp.float32), jnp.zeros((2, 2))]
    assert not np.isfinite(float(gradient_norm(tree)))


def test_a_step_whose_gradient_is_infinite_freezes_the_state():
    model, tx = SqrtAtZero(), optax.sgd(0.1)
    state = init_state(model, tx, X, key=jax.random.key(0))
    step = jax.jit(make_train_step(model, LOSS, tx))
    new, metrics = step(state, (X, Y), jax.random.key(1))
    assert np.isfinite(float(metrics["loss"]))  # only the gradient is bad
    assert int(new.diverged_step) == 0 and int(new.step) == 1
    for kept, old in zip(jax.tree.leaves(new.params), jax.tree.leaves(state.params), strict=True):
        np.testing.assert_array_equal(kept, old)
    # A healthy model's step moves its parameters and leaves diverged_step at -1.
    model = Deep(1)
    state = init_state(model, tx, X, key=jax.random.key(0))
    new, _ = jax.jit(make_train_step(model, LOSS, tx))(state, (X, Y), jax.random.key(1))
    assert int(new.diverged_step) == -1
    pairs = zip(jax.tree.leaves(new.params), jax.tree.leaves(state.params), strict=True)
    assert all(not np.array_equal(a, b) for a, b in pairs)


def _compiled_size(depth: int) -> tuple[int, int]:
    model, tx = Deep(depth), optimizers.get("adam", learning_rate=1e-2)
    state = init_state(model, tx, X, key=jax.random.key(0))
    step = make_train_step(model, LOSS, tx)
    text = jax.jit(step).lower(state, (X, Y), jax.random.key(1)).compile().as_text()
    return len(jax.tree.leaves(state.params)), len(re.findall(r"^\s+(?:ROOT )?\S+ = ", text, re.M))


def test_the_compiled_step_grows_linearly_with_the_parameter_leaves():
    # A divergence test that XLA copies into every parameter's update fusion makes the
    # program quadratic in the leaf count (before: +265 then +433 instructions per leaf
    # over these depths; now +128 both times), which slows compiles and cache reads.
    (l0, n0), (l1, n1), (l2, n2) = map(_compiled_size, (2, 8, 16))
    first, second = (n1 - n0) / (l1 - l0), (n2 - n1) / (l2 - l1)
    assert second <= 1.15 * first, (first, second)


def _loop_body_copies(compiled) -> int:
    """Copy instructions in the body of the compiled program's training loop (its while)."""
    text = compiled.as_text()
    body = re.search(r" while\(.*\bbody=(%[\w.-]+)", text).group(1)
    block = re.search(rf"^{re.escape(body)} .*?^}}", text, re.M | re.S).group(0)
    return len(re.findall(r"= \S+ copy\(", block))


def test_a_cpu_chunk_updates_its_state_in_place_with_the_same_numbers():
    # make_run_chunk compiles with region analysis in XLA:CPU's copy insertion, which
    # proves that the loop may update params and Adam's moments in place (copies per step:
    # 15 without it here, 0 with it); the arithmetic is the same, so the numbers are too.
    model, tx = Deep(2), optimizers.get("adam", learning_rate=1e-2)
    state = init_state(model, tx, X, key=jax.random.key(0))
    run_chunk = make_run_chunk(make_train_step(model, LOSS, tx), 5, 4)
    rng = np.random.default_rng(0)
    perms = tuple(jnp.asarray(rng.permutation(16), jnp.int32) for _ in range(3))
    args = (state, X, Y, perms, jax.random.key(1))
    lowered = run_chunk.lower(*args)
    default = lowered.compile()
    plain = lowered.compile({"xla_cpu_copy_insertion_use_region_analysis": False})
    assert _loop_body_copies(default) == 0
    assert _loop_body_copies(plain) > 0  # what the option removes is there without it
    (ours, ours_metrics), (theirs, their_metrics) = default(*args), plain(*args)
    assert int(ours.step) == 5
    for a, b in zip(
        jax.tree.leaves((ours, ours_metrics)), jax.tree.leaves((theirs, their_metrics)), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
