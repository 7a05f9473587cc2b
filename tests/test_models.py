"""Model zoo: shapes on sequences and images, train mode, reference parameter counts, the
PyTorch-layout GRU against numpy, the im2col convolution against ``flax.linen.Conv``, errors.

References are independent of the code under test: parameter counts are worked out by hand
from the published architectures, the GRU follows PyTorch's documented equations in numpy,
and the convolution and pooling are checked against Flax's own layers.
"""

import dataclasses
import functools
import inspect
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import toolkit.models as tkm
from toolkit.models.layers import Conv, activations, pool
from toolkit.models.nnx_bridge import FromNNX
from toolkit.models.recurrent import TorchGRUCell
from toolkit.registry import InvalidHyperparameterError, UnknownNameError

NUM_CLASSES = 5
# Tiny widths keep every model fast; a model not listed runs with its defaults.
SMALL = {
    "mlp": {"hidden": (8, 8), "dropout": 0.5},
    "cnn": {"channels": 4},
    "alexnet": {"width": 2, "hidden": 8},
    "resnet": {"depth": 8, "width": 0.25},
    "rnn": {"hidden": 3},
    "lstm": {"hidden": 3},
    "gru": {"hidden": 3},
    "transformer": {"d_model": 8, "depth": 1, "heads": 2, "dropout": 0.1},
}
RNGS = {"params": jax.random.key(0), "dropout": jax.random.key(1)}


def small(name: str) -> nn.Module:
    return tkm.get(name, num_classes=NUM_CLASSES, **SMALL.get(name, {}))


def init(model: nn.Module, x: jax.Array, seed: int = 0) -> dict:
    """Variables of ``model.init``'s structure and shapes, filled from numpy.

    Only shapes are traced (``jax.eval_shape``): on a busy 2-core CPU, compiling Flax's
    truncated-normal initializers costs seconds per model, while these tests are about the
    forward pass. Weights are N(0, 1 / fan_in), biases N(0, 1) so they matter; BatchNorm
    statistics start where Flax's do (mean 0, variance 1).
    """
    shapes = jax.eval_shape(model.init, RNGS, x)
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        kind = path[-1].key
        if kind in ("mean", "var"):
            return jnp.full(leaf.shape, 1.0 if kind == "var" else 0.0, leaf.dtype)
        fan_in = int(np.prod(leaf.shape[:-1])) if leaf.ndim > 1 else 1
        return jnp.asarray(rng.normal(size=leaf.shape) / np.sqrt(fan_in), leaf.dtype)

    return jax.tree_util.tree_map_with_path(fill, shapes)


def run(fn, *args):
    """``jax.jit(fn)(*args)`` compiled at XLA's lowest CPU optimization level.

    The tests compile dozens of small programs once each; skipping LLVM's optimizations
    halves compile time and changes no result beyond float rounding.
    """
    compiled = jax.jit(fn).lower(*args).compile({"xla_backend_optimization_level": 0})
    return compiled(*args)


def n_params(model: nn.Module, shape: tuple[int, ...]) -> int:
    shapes = jax.eval_shape(model.init, RNGS, jnp.zeros(shape, jnp.float32))
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(shapes["params"]))


# -- every model on every input kind -------------------------------------------------------------
@pytest.mark.parametrize("shape", [(3, 40), (3, 8, 8, 1), (3, 28, 28, 1)], ids=str)
@pytest.mark.parametrize("name", tkm.names())
def test_forward_on_sequences_and_images(name, shape):
    model = small(name)
    x = jax.random.normal(jax.random.key(2), shape)
    logits = run(functools.partial(model.apply, train=False), init(model, x), x)
    assert logits.shape == (shape[0], NUM_CLASSES)
    assert logits.dtype == jnp.float32
    assert np.isfinite(np.asarray(logits)).all()
    # The logits depend on the input: different examples, different outputs.
    assert not np.allclose(logits[0], logits[1], atol=1e-4)


@pytest.mark.parametrize("name", tkm.names())
def test_output_shapes_for_more_input_kinds(name):
    """Trace only: (B, L, C) sequences, 32x32x3 images, and a 5-D input that must fail."""
    model = small(name)
    for shape in [(2, 20, 3), (2, 32, 32, 3), (2, 12, 10, 2)]:
        x = jnp.zeros(shape, jnp.float32)
        out = jax.eval_shape(functools.partial(model.apply, train=False), init(model, x), x)
        assert (out.shape, out.dtype) == ((2, NUM_CLASSES), jnp.float32)
    for bad in [(2,), (2, 4, 4, 1, 1)]:
        # Linen models name the batch's shape; NNX models, built per example, its shape.
        shapes = f"{re.escape(str(bad))}|examples of shape {re.escape(str(bad[1:]))}"
        with pytest.raises(ValueError, match=shapes):
            jax.eval_shape(model.init, RNGS, jnp.zeros(bad, jnp.float32))


@pytest.mark.parametrize("name", tkm.names())
def test_init_and_train_mode(name):
    """Flax's real initializers, then train mode (dropout rng, mutable batch_stats) and eval."""
    model = small(name)
    x = jax.random.normal(jax.random.key(3), (4, 40))
    rate = {**tkm.models.entry(name).defaults, **SMALL.get(name, {})}.get("dropout", 0.0)

    def init_train_eval(x):
        variables = model.init(RNGS, x)

        def train(seed):
            rngs = {"dropout": jax.random.key(seed)}
            return model.apply(variables, x, train=True, rngs=rngs, mutable=["batch_stats"])

        (out0, state), (out1, _) = train(0), train(1)
        return variables, out0, out1, state, model.apply(variables, x, train=False)

    variables, out0, out1, state, eval_out = run(init_train_eval, x)
    assert all(np.isfinite(np.asarray(v)).all() for v in jax.tree.leaves(variables))
    assert out0.shape == (4, NUM_CLASSES) and out0.dtype == jnp.float32
    assert np.isfinite(np.asarray(out0)).all()
    if rate > 0:
        assert not np.allclose(out0, out1), "dropout masks must depend on the 'dropout' rng"
    else:
        np.testing.assert_array_equal(out0, out1)
    if "batch_stats" in variables:
        moved = jax.tree.map(
            lambda a, b: bool(np.any(a != b)), variables["batch_stats"], state["batch_stats"]
        )
        assert all(jax.tree.leaves(moved)), "every BatchNorm's running statistics must move"
        assert not np.allclose(out0, eval_out), "train mode normalizes by batch statistics"
    else:
        assert not state.get("batch_stats")
        if rate == 0:
            np.testing.assert_allclose(out0, eval_out, rtol=1e-5, atol=1e-6)


def test_batchnorm_running_stats_follow_pytorch_momentum():
    """First BatchNorm of a ResNet: running = 0.9 * initial + 0.1 * batch statistic."""
    model = tkm.get("resnet", depth=8, width=0.25)
    x = jax.random.normal(jax.random.key(4), (4, 40))
    variables = init(model, x)
    _, state = run(
        functools.partial(model.apply, train=True, mutable=["batch_stats"]), variables, x
    )
    # The stem conv (k3, pad 1, no bias) in numpy, one output channel at a time.
    kernel = np.asarray(variables["params"]["Conv_0"]["kernel"])[:, 0, :]  # (3, C)
    xp = np.pad(np.asarray(x, np.float64), [(0, 0), (1, 1)])
    conv = np.stack([xp[:, k : k + 40] for k in range(3)], -1) @ kernel  # (B, L, C)
    stats = state["batch_stats"]["BatchNorm_0"]
    np.testing.assert_allclose(stats["mean"], 0.1 * conv.mean((0, 1)), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(stats["var"], 0.9 + 0.1 * conv.var((0, 1)), rtol=1e-4)


# -- reference parameter counts -------------------------------------------------------------------
def _cifar_resnet_params(n: int, c_in: int, classes: int, w: int = 16) -> int:
    """He et al. 2016 CIFAR ResNet-(6n+2), option-A shortcuts: 3x3 convs without bias,
    BatchNorm scale + shift, Dense head."""
    conv, bn = (lambda a, b: 9 * a * b), (lambda c: 2 * c)
    total, cin = conv(c_in, w) + bn(w), w
    for c in (w, 2 * w, 4 * w):
        for _ in range(n):
            total += conv(cin, c) + bn(c) + conv(c, c) + bn(c)
            cin = c
    return total + 4 * w * classes + classes


LENET_HEAD = (120 * 84 + 84) + (84 * 10 + 10)
LENET_CONVS = (1 * 25 * 6 + 6) + (6 * 25 * 16 + 16)
REFERENCE_COUNTS = [
    # MNIST-1D (Greydanus 2020) reference models on (B, 40), default hyperparameters.
    ("linear", {}, (2, 40), 40 * 10 + 10),
    ("mlp", {}, (2, 40), (40 * 100 + 100) + (100 * 100 + 100) + (100 * 10 + 10)),
    # Conv1d(1, 25, 5, s2, p1) -> 19, Conv1d(25, 25, 3, s2, p1) x2 -> 10 -> 5, Linear(125, 10).
    ("cnn", {}, (2, 40), (1 * 5 * 25 + 25) + 2 * (25 * 3 * 25 + 25) + (25 * 5 * 10 + 10)),
    # nn.GRU(1, 6, bidirectional): per direction W_ih 18x1, W_hh 18x6, b_ih 18, b_hh 18;
    # Linear(40 * 12, 10).
    ("gru", {}, (2, 40), 2 * (18 * 1 + 18 * 6 + 18 + 18) + (40 * 12 * 10 + 10)),
    # LeNet-5 on 32x32 with valid convs: 32 -> 28 -> 14 -> 10 -> 5; 61,706 params.
    ("lenet5", {"padding": "valid"}, (2, 32, 32, 1), LENET_CONVS + (400 * 120 + 120) + LENET_HEAD),
    # 'same' padding on 28x28: 28 -> 28 -> 14 -> 14 -> 7.
    ("lenet5", {}, (2, 28, 28, 1), LENET_CONVS + (16 * 49 * 120 + 120) + LENET_HEAD),
    # ResNet-20 on CIFAR-10: "0.27M" in He et al. 2016, Table 6.
    ("resnet", {}, (2, 32, 32, 3), _cifar_resnet_params(3, 3, 10)),
]


@pytest.mark.parametrize(
    ("name", "hparams", "shape", "expected"),
    REFERENCE_COUNTS,
    ids=[f"{c[0]}-{c[3]}" for c in REFERENCE_COUNTS],
)
def test_reference_parameter_counts(name, hparams, shape, expected):
    assert n_params(tkm.get(name, **hparams), shape) == expected


def test_hand_counts_are_the_published_totals():
    """The formulas above against the numbers quoted by the papers and REFERENCE.md."""
    assert [c[3] for c in REFERENCE_COUNTS[:5]] == [410, 15_210, 5_210, 5_134, 61_706]
    assert REFERENCE_COUNTS[-1][3] == 269_722  # ResNet-20, "0.27M"


# -- GRU with PyTorch's equations -----------------------------------------------------------------
def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _torch_gru(x, w_ih, w_hh, b_ih, b_hh):
    """PyTorch ``nn.GRU`` (documented equations) over x (B, L, C); returns (B, L, H)."""
    hidden = w_hh.shape[1]
    h, out = np.zeros((x.shape[0], hidden)), []
    for t in range(x.shape[1]):
        gi, gh = x[:, t] @ w_ih.T + b_ih, h @ w_hh.T + b_hh
        r = _sigmoid(gi[:, :hidden] + gh[:, :hidden])
        z = _sigmoid(gi[:, hidden : 2 * hidden] + gh[:, hidden : 2 * hidden])
        n = np.tanh(gi[:, 2 * hidden :] + r * gh[:, 2 * hidden :])
        h = (1 - z) * n + z * h
        out.append(h)
    return np.stack(out, axis=1)


@pytest.mark.parametrize(
    ("bidirectional", "readout"),
    [(True, "flatten"), (True, "last"), (True, "mean"), (False, "flatten")],
)
def test_gru_matches_pytorch_equations(bidirectional, readout):
    model = tkm.get("gru", hidden=3, bidirectional=bidirectional, readout=readout, num_classes=4)
    x = jax.random.normal(jax.random.key(5), (2, 7, 2))
    variables = init(model, x, seed=1)
    got = run(model.apply, variables, x)

    p = jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"])

    def direction(name, seq):
        cell = p[name]  # our kernels are (in, 3h): PyTorch's weight_ih_l0 transposed
        return _torch_gru(
            seq,
            cell["input"]["kernel"].T,
            cell["hidden"]["kernel"].T,
            cell["input"]["bias"],
            cell["hidden"]["bias"],
        )

    xs = np.asarray(x, np.float64)
    outs = [direction("forward", xs)]
    if bidirectional:
        outs.append(direction("backward", xs[:, ::-1])[:, ::-1])  # PyTorch's reverse direction
    y = np.concatenate(outs, axis=-1)  # (B, L, D), as PyTorch's batch_first output
    features = {
        "flatten": y.reshape(2, -1),
        "last": np.concatenate([outs[0][:, -1], *(o[:, 0] for o in outs[1:])], -1),
        "mean": y.mean(1),
    }[readout]
    want = features @ p["head"]["kernel"] + p["head"]["bias"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_gru_cell_init_is_orthogonal_per_gate():
    cell = TorchGRUCell(features=4)
    x = jnp.zeros((1, 3))
    params = cell.init(jax.random.key(0), cell.initialize_carry(jax.random.key(1), x.shape), x)
    kernel = np.asarray(params["params"]["hidden"]["kernel"])
    assert kernel.shape == (4, 12) and params["params"]["input"]["kernel"].shape == (3, 12)
    for gate in np.split(kernel, 3, axis=1):
        np.testing.assert_allclose(gate.T @ gate, np.eye(4), atol=1e-5)
    assert not np.allclose(*np.split(kernel, 3, axis=1)[:2])
    for dense in ("input", "hidden"):
        np.testing.assert_array_equal(params["params"][dense]["bias"], np.zeros(12))


# -- the scan-friendly convolution and pooling against Flax's layers ------------------------------
CONV_CASES = [
    # (input shape, kernel, strides, padding): every setting the models use, plus odd ones.
    ((2, 13, 3), 5, 2, 1),  # cnn, 1-D
    ((2, 10, 3), 3, 2, 1),  # cnn / resnet downsampling, 1-D
    ((2, 11, 10, 2), 5, 2, 1),  # cnn, 2-D
    ((2, 9, 9, 2), 3, 1, 1),  # resnet
    ((2, 8, 8, 2), 3, 2, 1),  # resnet downsampling
    ((2, 9, 8, 2), 5, 1, "SAME"),  # lenet5 / alexnet
    ((2, 12, 3), 5, 1, "VALID"),  # lenet5 'valid', 1-D
    ((2, 9, 9, 2), 3, 2, "SAME"),  # asymmetric SAME padding
    ((2, 9, 7, 2), (3, 2), (2, 1), ((1, 0), (0, 2))),  # explicit pairs
]


@pytest.mark.parametrize(("shape", "kernel", "strides", "padding"), CONV_CASES, ids=str)
def test_conv_matches_flax_conv(shape, kernel, strides, padding):
    ndim = len(shape) - 2
    kernel_size = (kernel,) * ndim if isinstance(kernel, int) else kernel
    reference = nn.Conv(4, kernel_size, strides=strides, padding=padding)
    x = jax.random.normal(jax.random.key(6), shape)
    variables = init(reference, x)
    out_shape = jax.eval_shape(reference.apply, variables, x).shape
    cotangent = jax.random.normal(jax.random.key(7), out_shape)

    def out_and_grads(module):
        loss = lambda v, x: jnp.sum(module.apply(v, x) * cotangent)
        return module.apply(variables, x), jax.grad(loss, argnums=(0, 1))(variables, x)

    def all_impls(variables, x):
        ours = {
            impl: out_and_grads(Conv(4, kernel, strides, padding, impl=impl))
            for impl in ("im2col", "xla")
        }
        return out_and_grads(reference), ours

    (want, want_grads), ours = run(all_impls, variables, x)
    for impl, (got, got_grads) in ours.items():
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=impl)
        jax.tree.map(
            functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-5, err_msg=impl),
            got_grads,
            want_grads,
        )


@pytest.mark.parametrize("impl", ["auto", "im2col", "xla"])
def test_conv_impl_choice(impl):
    """'auto' avoids XLA's convolution exactly on the CPU backend."""
    on_cpu = jax.default_backend() == "cpu"
    conv, x = Conv(2, 3, impl=impl), jnp.zeros((1, 6, 1))
    variables = jax.eval_shape(conv.init, jax.random.key(0), x)
    jaxpr = str(jax.make_jaxpr(conv.apply)(variables, x))
    expect_conv = impl == "xla" or (impl == "auto" and not on_cpu)
    assert ("conv_general_dilated" in jaxpr) == expect_conv


POOL_CASES = [
    ("max", 2, None, "VALID"),
    ("avg", 2, None, "VALID"),
    ("max", 3, 2, "SAME"),
    ("avg", 3, 2, "SAME"),
]


@pytest.mark.parametrize("shape", [(2, 9, 3), (2, 7, 6, 2)], ids=str)
def test_pool_matches_flax_pooling(shape):
    x = jax.random.normal(jax.random.key(8), shape)

    def flax_pool(x, kind, window, strides, padding):
        ndim = x.ndim - 2
        # Flax's strides default to 1; ours to the window.
        args = ((window,) * ndim, (strides or window,) * ndim, padding)
        if kind == "max":
            return nn.max_pool(x, *args)
        return nn.avg_pool(x, *args, count_include_pad=False)

    def all_cases(x):
        both = []
        for case in POOL_CASES:
            fns = (
                functools.partial(
                    pool, kind=case[0], window=case[1], strides=case[2], padding=case[3]
                ),
                lambda x, case=case: flax_pool(x, *case),
            )
            both.append([(f(x), jax.grad(lambda x, f=f: jnp.sum(jnp.sin(f(x))))(x)) for f in fns])
        return both

    results = run(all_cases, x)
    for case, ((got, got_grad), (want, want_grad)) in zip(POOL_CASES, results, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6, err_msg=str(case))
        np.testing.assert_allclose(got_grad, want_grad, rtol=1e-5, atol=1e-6, err_msg=str(case))


# The activations' textbook formulas; a new activation without one here fails the test.
NUMPY_ACTIVATIONS = {
    "relu": lambda x: np.maximum(x, 0.0),
    "gelu": lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3))),
    "tanh": np.tanh,
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "silu": lambda x: x / (1 + np.exp(-x)),
    "elu": lambda x: np.where(x > 0, x, np.expm1(x)),
    "leaky_relu": lambda x: np.where(x > 0, x, 0.01 * x),
    "identity": lambda x: x,
}


@pytest.mark.parametrize("name", activations.names())
def test_activations_match_formulas(name):
    x = np.linspace(-4.0, 4.0, 17)
    got = activations.get(name)(jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(got, NUMPY_ACTIVATIONS[name](x), rtol=1e-5, atol=1e-6)


# -- registry and errors ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", tkm.names())
def test_defaults_are_the_module_fields(name):
    entry = tkm.models.entry(name)
    model = tkm.get(name)
    assert isinstance(model, nn.Module)
    if isinstance(model, FromNNX):  # an NNX module: its __init__'s keyword arguments
        params = inspect.signature(model.nnx_class.__init__).parameters
        fields = set(params) - {"self", "rngs", "input_shape"}
        built = dict(model.hparams)
    else:
        fields = {f.name for f in dataclasses.fields(entry.factory)} - {"parent", "name"}
        built = {k: getattr(model, k) for k in entry.defaults}
    assert set(entry.defaults) == fields
    assert entry.defaults["num_classes"] == 10
    assert built == dict(entry.defaults)
    assert entry.description and "\n" not in entry.description


def test_unknown_model_and_hyperparameter():
    with pytest.raises(UnknownNameError, match=r"'cnnn'.*Did you mean 'cnn'.*Valid model names"):
        tkm.get("cnnn")
    with pytest.raises(InvalidHyperparameterError, match=r"'chanels'.*Did you mean 'channels'"):
        tkm.get("cnn", chanels=8)
    for wiring in ("parent", "name"):
        with pytest.raises(InvalidHyperparameterError, match=wiring):
            tkm.get("mlp", **{wiring: None})


@pytest.mark.parametrize(
    ("name", "hparams"),
    [
        ("mlp", {"activation": "relu6"}),
        ("mlp", {"dropout": 1.0}),
        ("cnn", {"conv_impl": "cuda"}),
        ("lenet5", {"pool": "min"}),
        ("lenet5", {"padding": "full"}),
        ("lenet5", {"activation": "softplus"}),
        ("alexnet", {"dropout": -0.1}),
        ("resnet", {"depth": 9}),
        ("resnet", {"depth": 2}),
        ("resnet", {"width": 0.01}),
        ("rnn", {"readout": "first"}),
        ("gru", {"hidden": 0}),
        ("transformer", {"d_model": 10, "heads": 4}),
        ("transformer", {"patch_size": 0}),
    ],
    ids=str,
)
def test_bad_hyperparameter_values(name, hparams):
    value = next(iter(hparams.values()))  # the error names the bad value
    with pytest.raises(ValueError, match=re.escape(repr(value))):
        tkm.get(name, **hparams)


def test_bad_layer_arguments_and_small_inputs():
    with pytest.raises(ValueError, match=r"'fast'.*auto, im2col, xla"):
        Conv(2, 3, impl="fast")
    x = jnp.zeros((1, 8, 8, 1))
    with pytest.raises(ValueError, match="too small"):  # valid LeNet-5 needs >= 16 pixels
        jax.eval_shape(tkm.get("lenet5", padding="valid").init, RNGS, x)
    with pytest.raises(ValueError, match="'CIRCULAR'"):
        jax.eval_shape(Conv(2, 3, padding="CIRCULAR").init, RNGS, x)
    with pytest.raises(ValueError, match="'min'"):
        pool(x, "min", 2)
