"""Multi-process training with JAX's distributed runtime, two processes on this machine.

Two workers with two simulated CPU devices each join one job (gloo collectives) and train
one config on the global 4-device mesh; both must end with the same params, equal to a
one-device run in this process with the same global batch (up to float reassociation).
"""

import os
import re
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

import toolkit as tk
from toolkit import distributed
from toolkit.data import Split

CONFIG = {
    "model": "mlp",
    "model_hparams": {"hidden": (16,)},
    "steps": 12,
    "batch_size": 16,
    "learning_rate": 1e-2,
    "log_every": 6,
}

WORKER = textwrap.dedent(
    """
    import json, sys
    import jax
    jax.config.update("jax_numpy_dtype_promotion", "strict")
    from toolkit import distributed
    distributed.initialize()
    import numpy as np
    import toolkit as tk
    from toolkit.data import Split

    out, config = sys.argv[1], json.loads(sys.argv[2])
    config["model_hparams"] = {"hidden": tuple(config["model_hparams"]["hidden"])}  # JSON list
    rng = np.random.default_rng(3)
    x = rng.normal(size=(64, 40)).astype(np.float32)
    y = (x[:, :20].sum(1) > 0).astype(np.int32)
    distributed.assert_same_across_processes((x, y))
    try:  # data that differs between the processes must be caught
        distributed.assert_same_across_processes(np.arange(3) + jax.process_index())
        mismatch = ""
    except AssertionError as error:
        mismatch = str(error)
    run = tk.train(Split(x, y), num_classes=2, verbose=False, devices=jax.devices(), **config)
    leaf = jax.tree.leaves(run.state.params)[0]
    local = distributed.local_run(run)
    accuracy = tk.evaluate(local, Split(x, y)).loc[0, "accuracy"]
    leaves = jax.tree_util.tree_leaves_with_path(local.params)
    params = {jax.tree_util.keystr(k): v for k, v in leaves}
    np.savez(
        f"{out}/params_{jax.process_index()}.npz",
        __process_count=jax.process_count(),
        __local_devices=jax.local_device_count(),
        __mesh_devices=len(leaf.sharding.device_set),
        __fully_addressable=leaf.is_fully_addressable,
        __losses=np.asarray([row["loss"] for row in run.curve]),
        __accuracy=accuracy,
        __mismatch=mismatch,
        **params,
    )
    """
)

REPO = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(3)
X = RNG.normal(size=(64, 40)).astype(np.float32)
Y = (X[:, :20].sum(1) > 0).astype(np.int32)


@pytest.mark.slow
def test_two_processes_train_the_same_model_as_one_device(tmp_path):
    import json

    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    results = distributed.launch_local(
        [sys.executable, str(script), str(tmp_path), json.dumps(CONFIG)],
        2,
        devices_per_process=2,
        env={"XLA_FLAGS": "", "PYTHONPATH": os.pathsep.join([str(REPO), *sys.path])},
        timeout=240,
        capture=True,
    )
    for rank, result in enumerate(results):
        assert result.returncode == 0, f"process {rank} failed:\n{result.stderr[-3000:]}"
    saved = [dict(np.load(tmp_path / f"params_{rank}.npz")) for rank in range(2)]
    for info in saved:
        assert int(info["__process_count"]) == 2
        assert int(info["__local_devices"]) == 2
        # The params live on one global mesh spanning both processes' devices.
        assert int(info["__mesh_devices"]) == 4
        assert not bool(info["__fully_addressable"])
        assert "the data differs between processes" in str(info["__mismatch"])

    reference = tk.train(Split(X, Y), num_classes=2, verbose=False, devices=1, **CONFIG)
    expected = {
        jax.tree_util.keystr(k): np.asarray(v)
        for k, v in jax.tree_util.tree_leaves_with_path(reference.params)
    }
    first, second = ({k: v for k, v in s.items() if not k.startswith("__")} for s in saved)
    assert first.keys() == second.keys() == expected.keys()
    for name, value in expected.items():
        # Both processes ran the same replicated update: identical bits.
        np.testing.assert_array_equal(first[name], second[name])
        np.testing.assert_allclose(first[name], value, rtol=2e-5, atol=2e-5)
    losses = [row["loss"] for row in reference.curve]
    np.testing.assert_allclose(saved[0]["__losses"], losses, rtol=1e-5)
    assert float(saved[0]["__accuracy"]) == pytest.approx(
        float(tk.evaluate(reference, Split(X, Y)).loc[0, "accuracy"])
    )


def test_settings_are_checked_before_connecting(monkeypatch):
    for var in distributed.ENV_VARS.values():
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ValueError, match=re.escape("missing: process_id (or $TOOLKIT_PROCESS_ID)")):
        distributed.initialize("localhost:1234", 2)
    with pytest.raises(ValueError, match=re.escape("'host:port' with a port in 1..65535, got")):
        distributed.initialize("localhost", 2, 0)
    with pytest.raises(ValueError, match=re.escape("got 'localhost:70000'")):
        distributed.initialize("localhost:70000", 2, 0)
    with pytest.raises(ValueError, match=re.escape("process_id must be in 0..1 (num_processes=2)")):
        distributed.initialize("localhost:1234", 2, 2)
    monkeypatch.setenv("TOOLKIT_NUM_PROCESSES", "two")
    with pytest.raises(ValueError, match=re.escape("num_processes must be an integer, got 'two'")):
        distributed.initialize("localhost:1234", process_id=0)


def test_local_copy_gives_host_arrays_of_sharded_and_replicated_values():
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from toolkit.training import data_mesh

    mesh = data_mesh(jax.local_devices())
    values = np.arange(8 * 3, dtype=np.float32).reshape(8, 3)
    tree = {
        "sharded": jax.device_put(values, NamedSharding(mesh, P("data"))),
        "replicated": jax.device_put(values, NamedSharding(mesh, P())),
        "other": "kept",
    }
    copy = distributed.local_copy(tree)
    for name in ("sharded", "replicated"):
        assert type(copy[name]) is np.ndarray
        np.testing.assert_array_equal(copy[name], values)
    assert copy["other"] == "kept"


def test_launch_local_sets_ranks_and_stops_the_rest_when_one_fails():
    show = "import os; print(os.environ['TOOLKIT_PROCESS_ID'], os.environ['TOOLKIT_NUM_PROCESSES'])"
    results = distributed.launch_local(
        [sys.executable, "-c", show], 3, devices_per_process=2, capture=True, timeout=60
    )
    assert [r.stdout.split() for r in results] == [["0", "3"], ["1", "3"], ["2", "3"]]
    # Rank 1 fails at once; rank 0 would sleep for a minute if it were not stopped.
    fail = (
        "import os, sys, time; "
        "time.sleep(60 * (os.environ['TOOLKIT_PROCESS_ID'] == '0')); sys.exit(3)"
    )
    results = distributed.launch_local([sys.executable, "-c", fail], 2, timeout=30)
    assert results[1].returncode == 3 and results[0].returncode != 0
    assert distributed.main(["-n", "2", "--", sys.executable, "-c", "import sys; sys.exit(5)"]) == 5
    with pytest.raises(ValueError, match="num_processes must be a positive int, got 0"):
        distributed.launch_local(["true"], 0)
