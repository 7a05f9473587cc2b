"""Settings, paths and figure display for the notebooks in this folder, and the command
that executes them.

Notebooks read their size from the environment, so one file serves both a full run (the
stored outputs) and a quick one (the tests)::

    import nbsupport as nb                    # found next to the notebook
    steps = nb.pick(quick=200, full=3000)     # TOOLKIT_NOTEBOOK_QUICK=1 selects quick

Jupyter starts a notebook's kernel in the notebook's folder, so ``import nbsupport``
finds this file; :func:`execute` also puts this folder on the kernel's ``PYTHONPATH``.

Execute notebooks in fresh kernels (``--inplace`` stores the outputs in the files)::

    python notebooks/nbsupport.py --inplace notebooks/*.ipynb            # full settings
    python notebooks/nbsupport.py --quick notebooks/01_quickstart.ipynb  # check only

Environment variables:

- ``TOOLKIT_NOTEBOOK_QUICK``: 1/true/yes for small settings, 0/false/no or unset for full.
- ``TOOLKIT_NOTEBOOK_OUTPUT``: where notebooks write (sweeps, reports); default a new
  temporary directory, so running a notebook never writes into the repository.
- ``TOOLKIT_RESULTS_DIR``: the results root that ``03_ood_analysis`` reads (default the
  repository's ``results/``).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "OUTPUT_ENV",
    "QUICK_ENV",
    "RESULTS_ENV",
    "execute",
    "experiment_dir",
    "output_dir",
    "pick",
    "quick_mode",
    "repo_root",
    "results_root",
    "show",
]

QUICK_ENV = "TOOLKIT_NOTEBOOK_QUICK"
OUTPUT_ENV = "TOOLKIT_NOTEBOOK_OUTPUT"
RESULTS_ENV = "TOOLKIT_RESULTS_DIR"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")
T = TypeVar("T")


def quick_mode(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``TOOLKIT_NOTEBOOK_QUICK`` asks for small settings (unset: no)."""
    value = (os.environ if environ is None else environ).get(QUICK_ENV, "").strip().lower()
    if value not in _TRUE + _FALSE:
        raise ValueError(
            f"{QUICK_ENV}={value!r} is not a yes/no value; use one of {', '.join(_TRUE)} "
            f"for quick mode or one of {', '.join(v for v in _FALSE if v)} (or unset) for full"
        )
    return value in _TRUE


def pick(*, quick: T, full: T) -> T:
    """``quick`` in quick mode, else ``full``."""
    return quick if quick_mode() else full


def repo_root() -> Path:
    """The repository holding the notebooks (where ``experiments/`` and ``results/`` live)."""
    return Path(__file__).resolve().parent.parent


def results_root() -> Path:
    """``TOOLKIT_RESULTS_DIR`` if set, else the repository's ``results/``."""
    value = os.environ.get(RESULTS_ENV)
    return Path(value) if value else repo_root() / "results"


def experiment_dir(name: str, root: str | Path | None = None) -> Path | None:
    """``<root>/<name>`` if it holds an ``evals.jsonl``, else ``<root>/<name>_quick`` (the
    quick variant's directory), else None."""
    root = results_root() if root is None else Path(root)
    for candidate in (root / name, root / f"{name}_quick"):
        if (candidate / "evals.jsonl").is_file():
            return candidate
    return None


def output_dir(name: str = "output") -> Path:
    """A directory for a notebook's outputs: ``TOOLKIT_NOTEBOOK_OUTPUT/<name>`` if that
    variable is set, else a new temporary directory."""
    value = os.environ.get(OUTPUT_ENV)
    if value:
        path = Path(value) / name
        path.mkdir(parents=True, exist_ok=True)
        return path
    return Path(tempfile.mkdtemp(prefix=f"toolkit-{name}-"))


def show(fig: Any, *, dpi: int = 80) -> None:
    """Displays a matplotlib Figure inline as a PNG at ``dpi``, keeping stored notebooks small.

    Report figures are built on ``matplotlib.figure.Figure`` without pyplot, so they are
    rendered here explicitly rather than by the inline backend. Plots use few colours, so
    the PNG is re-encoded with a 256-colour palette when that is smaller (typically 2-3x).
    """
    from IPython.display import Image, display
    from PIL import Image as PILImage

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    data = buffer.getvalue()
    palette = io.BytesIO()
    PILImage.open(io.BytesIO(data)).convert("RGB").quantize(colors=256).save(
        palette, format="PNG", optimize=True
    )
    display(Image(data=min(data, palette.getvalue(), key=len), format="png"))


def execute(
    path: str | Path,
    *,
    quick: bool,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: int = 1800,
):
    """Runs every cell of the notebook at ``path`` in a fresh ``python3`` kernel, in order.

    The kernel gets this process's environment plus ``TOOLKIT_NOTEBOOK_QUICK`` and ``env``,
    with this folder on its ``PYTHONPATH`` (so ``import nbsupport`` works from any ``cwd``),
    and runs in ``cwd`` (default: the notebook's folder). Returns ``(notebook, seconds)``;
    a failing cell raises ``nbclient.exceptions.CellExecutionError`` naming the cell.
    Nothing is written: store the result with ``nbformat.write``.
    """
    import nbformat
    from nbclient import NotebookClient

    path = Path(path)
    notebook = nbformat.read(path, as_version=4)
    kernel_env = {**os.environ, QUICK_ENV: "1" if quick else "0", **(env or {})}
    search = [str(Path(__file__).resolve().parent), kernel_env.get("PYTHONPATH", "")]
    kernel_env["PYTHONPATH"] = os.pathsep.join(p for p in search if p)
    workdir = Path(cwd) if cwd is not None else path.parent
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(workdir)}},
    )
    start = time.perf_counter()
    client.execute(env=kernel_env)
    return notebook, time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> int:
    """``python notebooks/nbsupport.py [--quick] [--inplace] NOTEBOOK...``"""
    parser = argparse.ArgumentParser(
        prog="python notebooks/nbsupport.py",
        description="Execute notebooks top to bottom in fresh kernels.",
    )
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--quick", action="store_true", help=f"small settings ({QUICK_ENV}=1)")
    parser.add_argument("--inplace", action="store_true", help="store outputs in the files")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.notebooks if not p.is_file()]
    if missing:
        parser.error(f"no such notebook: {', '.join(missing)}")
    import nbformat

    for path in args.notebooks:
        notebook, seconds = execute(path, quick=args.quick, timeout=args.timeout)
        if args.inplace:
            nbformat.write(notebook, path)
        size = f", {path.stat().st_size / 1e6:.2f} MB" if args.inplace else ""
        print(f"{path}: executed in {seconds:.0f} s{size}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
