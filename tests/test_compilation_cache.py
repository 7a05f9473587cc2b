"""The persistent compilation cache: a second process reads what the first one compiled.

Cache use is read from JAX's own signals, not from timings: its ``jax.monitoring`` events
(hits and misses), its compiler's log lines, and the files it writes.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from toolkit.compilation_cache import default_cache_dir, enable_compilation_cache

REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    """
    import json, logging, sys
    import jax, jax.numpy as jnp
    from toolkit.compilation_cache import cache_events, enable_compilation_cache

    logging.basicConfig(stream=sys.stderr)
    logging.getLogger("jax._src.compiler").setLevel(logging.DEBUG)
    logging.getLogger("jax._src.compilation_cache").setLevel(logging.DEBUG)
    events = {"hits": 0, "misses": 0}
    names = {"/jax/compilation_cache/cache_hits": "hits",
             "/jax/compilation_cache/cache_misses": "misses"}
    def listen(event, **kwargs):
        if event in names:
            events[names[event]] += 1
    jax.monitoring.register_event_listener(listen)

    def f(x):
        return jnp.sin(x) @ x.T + 1.0

    def h(x):
        return jnp.cos(x).sum()

    x = jnp.arange(12.0).reshape(3, 4)  # compiled before the cache is enabled: not cached
    enable_compilation_cache(sys.argv[1])
    with cache_events() as counted:
        jax.jit(f)(x).block_until_ready()
    first = dict(events)
    if len(sys.argv) > 2:  # point the cache at another directory and compile another function
        enable_compilation_cache(sys.argv[2])
        jax.jit(h)(x).block_until_ready()
    print(json.dumps({"events": first, "counted": counted}))
    """
)


def run(*dirs: Path, script: str = SCRIPT, **env_vars: str) -> tuple[Any, str]:
    """Runs ``script`` with ``dirs`` as arguments in a fresh process (no JAX cache set up);
    returns its last line of output, parsed as JSON, and its log."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *sys.path]), **env_vars}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    done = subprocess.run(
        [sys.executable, "-c", script, *map(str, dirs)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def entries(directory: Path, module: str) -> set[str]:
    return {p.name for p in directory.iterdir() if p.name.startswith(f"{module}-")}


def test_second_process_reads_the_executables_the_first_wrote(tmp_path):
    cache, other = tmp_path / "cache", tmp_path / "other"
    first, log = run(cache, other)
    assert first["events"] == {"hits": 0, "misses": 1}
    assert "PERSISTENT COMPILATION CACHE MISS for 'jit_f'" in log
    written = entries(cache, "jit_f")
    assert len(written) == 1
    # After re-pointing, new programs go to the new directory only.
    assert len(entries(other, "jit_h")) == 1 and not entries(cache, "jit_h")

    second, log = run(cache)
    assert second["events"] == {"hits": 1, "misses": 0}
    assert "Persistent compilation cache hit for 'jit_f'" in log
    assert entries(cache, "jit_f") == written
    # cache_events saw what JAX's own events said.
    for result in (first, second):
        assert {k: result["counted"][k] for k in ("hits", "misses")} == result["events"]
        assert result["counted"]["requests"] == 1
        assert result["counted"]["backend_compile_s"] > 0


def test_default_directory_follows_toolkit_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("TOOLKIT_CACHE_DIR", str(tmp_path / "root"))
    assert default_cache_dir() == tmp_path / "root" / "jax_cache"
    monkeypatch.delenv("TOOLKIT_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "toolkit" / "jax_cache"


ENSURE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax
    from toolkit.compilation_cache import ensure_compilation_cache

    first = ensure_compilation_cache()  # nothing configured yet: the toolkit's default
    jax.config.update("jax_compilation_cache_dir", sys.argv[1])  # configured by someone else
    second = ensure_compilation_cache()
    print(json.dumps([str(first), str(second), jax.config.jax_compilation_cache_dir]))
    """
)


def test_ensure_turns_the_default_cache_on_but_keeps_a_configured_one(tmp_path):
    mine = tmp_path / "mine"
    result, _ = run(mine, script=ENSURE_SCRIPT, TOOLKIT_CACHE_DIR=str(tmp_path / "root"))
    first, second, configured = result
    assert first == str(tmp_path / "root" / "jax_cache") and Path(first).is_dir()
    assert second == configured == str(mine)


def test_bad_settings_are_errors_before_jax_is_touched(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(NotADirectoryError, match="is not a directory"):
        enable_compilation_cache(blocker)
    with pytest.raises(ValueError, match="min_compile_time_secs must be >= 0, got -1"):
        enable_compilation_cache(tmp_path, min_compile_time_secs=-1)
    with pytest.raises(ValueError, match="max_size_bytes must be a positive int or None, got 0"):
        enable_compilation_cache(tmp_path, max_size_bytes=0)


SWITCH_SCRIPT = textwrap.dedent(
    """
    import json, os
    import jax
    from toolkit.compilation_cache import ensure_compilation_cache

    off = [ensure_compilation_cache(), jax.config.jax_compilation_cache_dir]  # TOOLKIT_CACHE=0
    os.environ["TOOLKIT_CACHE"] = "1"
    print(json.dumps([*off, str(ensure_compilation_cache())]))
    """
)


def test_ensure_leaves_the_cache_off_under_the_one_switch(tmp_path):
    result, _ = run(script=SWITCH_SCRIPT, TOOLKIT_CACHE="0", TOOLKIT_CACHE_DIR=str(tmp_path))
    returned, configured, on = result
    assert returned is None and not configured  # nothing turned on, nothing written
    assert on == str(tmp_path / "jax_cache") and sorted(tmp_path.iterdir()) == [Path(on)]
