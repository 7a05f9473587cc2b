"""Writes the generated block of ``results/benchmarks/README.md`` from the committed reports.

    python -m benchmarks.readme            # rewrite the block in place
    python -m benchmarks.readme --check    # exit 1 if the block differs from the reports

Every report under ``results/benchmarks/`` opens with a header naming its machine, date and
command (:func:`benchmarks.machine.header`). For each report this writes one section: what
it measures, that machine, date and command, and one table of the report's headline columns,
copied cell for cell. So the README's figures are the reports' figures, never typed; rerun
this after rewriting a report. A report without a :data:`SECTIONS` entry gets its first
table whole.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from benchmarks.machine import REPO, markdown_table

__all__ = ["SECTIONS", "Section", "headline", "parse_report", "render", "update"]

FOLDER = REPO / "results" / "benchmarks"
README = FOLDER / "README.md"
BEGIN = "<!-- begin: written by `python -m benchmarks.readme` from the reports; do not edit -->"
END = "<!-- end: written by `python -m benchmarks.readme` -->"
ORDER = ("vs_pytorch", "population", "compile", "checkpoint", "data_load", "roofline",
         "shuffle", "sweep_wall", "ood_cost")  # fmt: skip


@dataclass(frozen=True)
class Section:
    """What a benchmark measures and which columns of its report are the headline.

    ``columns`` holds alternatives, tried in order against each table of the report (the
    first table holding every column of one alternative wins), so a report written with
    other options, or by an older version of its script, still finds its table. A column is
    ``(name, label)``: ``name`` is a header as the report writes it, ``"ratio#2"`` for its
    second occurrence, or ``"~regex"`` for any number of matching headers (each kept under
    its own name); ``label`` (None: the name) is the README's header.
    """

    what: str
    columns: tuple[tuple[tuple[str, str | None], ...], ...]


def _cols(*names: str | tuple[str, str]) -> tuple[tuple[str, str | None], ...]:
    return tuple((n, None) if isinstance(n, str) else n for n in names)


SECTIONS = {
    "vs_pytorch": Section(
        "Steady-state training steps/s of `tk.train` against a PyTorch eager loop on one "
        "thread and a per-step jitted JAX loop, on the MNIST-1D reference MLP, CNN and GRU "
        "(PyTorch is a benchmark-only dependency: `pip install torch==2.13.0`, the CPU build).",
        (
            _cols(
                "model",
                "steps",
                "toolkit",
                "~toolkit @ .*",
                "jax jit loop",
                "torch 1 thread",
                "toolkit / torch 1 thread",
                "jax jit loop / torch 1 thread",
                "~toolkit / toolkit @ .*",
            ),
        ),
    ),
    "population": Section(
        "On CPU, the sweep runner's CPU mode (one single-threaded worker per core) against one "
        "process on the same runs; on a GPU, one vmapped population of K members against K "
        "sequential `tk.train` runs (model-steps/s).",
        (
            _cols(
                "model",
                "runs x steps",
                "variant",
                "model-steps/s",
                ("ratio#1", "ratio"),
                "warm model-steps/s",
                ("ratio#2", "warm ratio"),
            ),
            _cols(
                "model",
                "K",
                "vmapped steady",
                "sequential steady",
                ("ratio#2", "steady ratio"),
                "vmapped e2e",
                "sequential e2e",
                ("ratio#1", "e2e ratio"),
            ),
        ),
    ),
    "compile": Section(
        "Time to first step of every registered model on its natural data, cold against a "
        "warm persistent compilation cache (`toolkit.compilation_cache`), seconds.",
        (_cols("model", "data", "cold: first step", "warm: first step", "warm: XLA", "speedup"),),
    ),
    "checkpoint": Section(
        "What one orbax save of a trained MNIST-1D state costs, and seconds per sweep run with a "
        "save every 5 chunks against the default time-spaced schedule.",
        (
            _cols(
                "model",
                "one save: wall ms",
                "= training steps",
                "run s, saves by chunks",
                "run s, default schedule",
                "ratio",
            ),
        ),
    ),
    "data_load": Section(
        "Seconds of loading a dataset in a fresh process: TFDS decoding every example against "
        "the dataset cache (`toolkit.data.cache`), each way with the TFDS import it needs.",
        (
            _cols("dataset", "tfds s", "by TFDS name s", "cached s", "tfds - cached s"),
            _cols("dataset", "decode s", "decoded s", "loaded s", "decode / loaded"),
        ),
    ),
    "roofline": Section(
        "Achieved FLOP/s of training steps against a matmul peak measured in the same run.",
        (
            _cols(
                "workload",
                "steps/s",
                "GFLOP/s (XLA count)",
                "matmul peak GFLOP/s",
                "fraction of peak (larger count)",
            ),
        ),
    ),
    "shuffle": Section(
        "The trainer's on-device shuffle: `jax.random.permutation` drawn in every chunk "
        "against `toolkit.shuffle` (identical outputs, checked), per training step.",
        (
            _cols(
                "data",
                "n",
                "chunk steps x batch",
                ("one permutation ms: jax", "permutation ms: jax"),
                ("toolkit", "permutation ms: toolkit"),
                ("ratio#1", "ratio"),
                ("shuffle us per training step: before", "us per step: before"),
                "now",
                ("ratio#2", "ratio"),
            ),
        ),
    ),
    "sweep_wall": Section(
        "Wall time of the loss-comparison sweeps through `python -m experiments.sweep`, cold "
        "and on a warm compilation cache (with `--from`, also finished sweeps as recorded).",
        (_cols("sweep", "cache", "command wall s", "runs done / found", "span of runs s"),),
    ),
    "ood_cost": Section(
        "What every OOD scorer, and MC dropout, conformal sets, AURC and deep ensembles, add "
        "to the wall time of the `ood_methods` sweep (`python -m experiments.sweep`, warm).",
        (_cols("variant", "evaluates", "command wall s", "runs", "wall / baseline"),),
    ),
}


@dataclass(frozen=True)
class Report:
    """A report's title, header fields (``Machine``, ``Date``, ...) and tables."""

    title: str
    fields: dict[str, str]
    tables: list[tuple[list[str], list[list[str]]]]


def parse_report(text: str) -> Report:
    """The title, the ``- Name: value`` header lines before the first blank line after the
    title, and every markdown table (header cells, body rows) of a report."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("# "):
        raise ValueError("a report opens with a '# title' line")
    fields = {}
    for line in lines[1:]:
        match = re.match(r"- ([^:]+): (.*)", line)
        if match and match[1] not in fields:
            fields[match[1]] = match[2]
    tables, block = [], []
    for line in [*lines, ""]:
        if line.startswith("|"):
            block.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif block:
            tables.append((block[0], block[2:]))
            block = []
    return Report(lines[0][2:].strip(), fields, tables)


def _keys(header: list[str]) -> list[str]:
    """Header names with ``#n`` added to every occurrence of a repeated one."""
    seen: dict[str, int] = {}
    keys = []
    for name in header:
        seen[name] = seen.get(name, 0) + 1
        keys.append(f"{name}#{seen[name]}" if header.count(name) > 1 else name)
    return keys


def _pick(header: list[str], columns) -> list[tuple[int, str]] | None:
    keys = _keys(header)
    picked = []
    for name, label in columns:
        if name.startswith("~"):
            picked += [(i, h) for i, h in enumerate(header) if re.fullmatch(name[1:], h)]
        elif name in keys:
            picked.append((keys.index(name), label or name))
        else:
            return None
    return picked


def headline(stem: str, report: Report) -> list[str]:
    """The markdown lines of the report's headline table (see :class:`Section`)."""
    if not report.tables:
        raise ValueError(f"the {stem} report has no table")
    section = SECTIONS.get(stem)
    if section is None:
        header, rows = report.tables[0]
        return markdown_table(header, rows)
    for columns in section.columns:
        for header, rows in report.tables:
            picked = _pick(header, columns)
            if picked:
                return markdown_table([label for _, label in picked],
                                      [[row[i] for i, _ in picked] for row in rows])  # fmt: skip
    found = "; ".join(", ".join(header) for header, _ in report.tables)
    wanted = "; or ".join(", ".join(n for n, _ in columns) for columns in section.columns)
    raise ValueError(
        f"no table of the {stem} report has the columns {wanted} "
        f"(its tables' columns: {found}); update SECTIONS in benchmarks/readme.py"
    )


def _reports(folder: Path) -> list[Path]:
    def rank(path: Path) -> tuple:
        stem = path.stem
        return (ORDER.index(stem) if stem in ORDER else len(ORDER), stem, len(path.parts))

    return sorted((p for p in folder.rglob("*.md") if p.name != "README.md"), key=rank)


def render(folder: Path = FOLDER) -> str:
    """The generated block (markers included) for the reports under ``folder``."""
    out = [BEGIN, ""]
    for path in _reports(folder):
        name = path.relative_to(folder).as_posix()
        report = parse_report(path.read_text())
        missing = [f for f in ("Machine", "Date", "Command (from the repository root)")
                   if f not in report.fields]  # fmt: skip
        if missing:
            raise ValueError(f"{name} lacks the header line(s) {', '.join(missing)}")
        section = SECTIONS.get(path.stem)
        machine = report.fields["Machine"]
        gpus = report.fields.get("Accelerators", "")
        if gpus and not gpus.startswith("none"):
            machine += f"; {gpus}"
        out += [f"## `{name}`: {report.title}", ""]
        if section:
            out += [section.what, ""]
        out += [
            f"- Machine: {machine}",
            f"- Date: {report.fields['Date']}",
            f"- Command: {report.fields['Command (from the repository root)']}",
            "",
            *headline(path.stem, report),
            "",
        ]
    return "\n".join([*out, END])


def update(readme: Path = README, folder: Path = FOLDER) -> str:
    """``readme``'s text with its generated block replaced by :func:`render`'s."""
    text = readme.read_text()
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        raise ValueError(f"{readme} needs exactly one line {BEGIN!r} and one {END!r}")
    head, rest = text.split(BEGIN)
    tail = rest.split(END)[1]
    return head + render(folder) + tail


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the README is stale")
    args = parser.parse_args(argv)
    text = update()
    if args.check:
        if text != README.read_text():
            sys.exit(f"{README} is stale: run python -m benchmarks.readme")
        return
    README.write_text(text)
    print(f"wrote {README.relative_to(REPO)}")


if __name__ == "__main__":
    main()
