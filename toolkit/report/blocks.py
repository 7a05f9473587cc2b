"""Numbers in prose come from the report: named Markdown fragments and README blocks.

The report renders named fragments (``Report.blocks``: tables such as ``pivot_id_accuracy``
and one-line facts such as ``line_fit``). A README holds a fragment between two markers,
and :func:`fill_blocks` replaces what stands between them with the current fragment,
leaving every other character of the file as it is::

    <!-- report:pivot_id_accuracy -->
    | loss | cnn | ... |
    <!-- /report:pivot_id_accuracy -->

    probit fit <!-- report:line_fit -->slope 0.42, ...<!-- /report:line_fit -->

A multi-line fragment stands on its own lines between the markers, a one-line fragment
inline; a marker quoted as inline code (after a backtick) is prose, not a block. In a
README outside the results directory, a block names its experiment,
``<!-- report:loss_comparison/line_fit -->``, and only the blocks of the experiment being
reported on are refreshed there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import pandas as pd

from toolkit.report.tables import markdown_table

__all__ = ["BlockError", "block_names", "fill_blocks", "set_means_table"]

_MARKER = re.compile(r"(?<!`)<!-- (/?)report:([^\s>]+) -->")  # `quoted` ones are prose


class BlockError(ValueError):
    """A README whose report blocks cannot be filled (unknown name, unpaired marker)."""


def _blocks(text: str, source: str) -> list[tuple[str, int, int]]:
    """``(name, start, end)`` of each block's content, checking that markers pair up."""
    found, open_name, open_end = [], None, 0
    for match in _MARKER.finditer(text):
        closing, name = match.group(1) == "/", match.group(2)
        line = text.count("\n", 0, match.start()) + 1
        if not closing:
            if open_name is not None:
                raise BlockError(
                    f"{source}:{line}: block {name!r} opens inside block {open_name!r} "
                    f"(close it with <!-- /report:{open_name} --> first)"
                )
            open_name, open_end = name, match.end()
        elif name != open_name:
            expected = f"<!-- /report:{open_name} -->" if open_name else "no closing marker"
            raise BlockError(
                f"{source}:{line}: closing marker of {name!r} where {expected} was expected"
            )
        else:
            found.append((name, open_end, match.start()))
            open_name = None
    if open_name is not None:
        raise BlockError(f"{source}: block {open_name!r} is never closed")
    return found


def block_names(text: str, *, source: str = "README") -> list[str]:
    """Names of the blocks in ``text``, in order (markers checked as by :func:`fill_blocks`)."""
    return [name for name, _, _ in _blocks(text, source)]


def _render(fragment: str) -> str:
    fragment = fragment.strip("\n")
    return f"\n{fragment}\n" if "\n" in fragment else fragment


def fill_blocks(
    text: str, blocks: Mapping[str, str], *, experiment: str | None = None, source: str = "README"
) -> str:
    """``text`` with the content of every block replaced by its fragment from ``blocks``.

    With ``experiment=None`` every block is filled and must name a fragment; with
    ``experiment="name"`` only the blocks named ``name/<fragment>`` are, the others are
    left alone. Text outside the blocks is returned unchanged.

    Raises:
      BlockError: a block names no fragment (the message lists the valid names), or its
        markers do not pair up.
    """
    prefix = f"{experiment}/" if experiment is not None else ""
    out, last = [], 0
    for name, start, end in _blocks(text, source):
        if not name.startswith(prefix):
            continue
        key = name[len(prefix) :]
        if key not in blocks:
            valid = ", ".join(prefix + k for k in sorted(blocks))
            raise BlockError(f"{source}: unknown report block {name!r}; valid blocks: {valid}")
        out += [text[last:start], _render(blocks[key])]
        last = end
    return "".join([*out, text[last:]])


def set_means_table(sets: pd.DataFrame) -> str:
    """Accuracy (%) per eval set (rows, worst first) and architecture (columns): the mean
    over the finished groups (losses and other config values) and severities of each
    group's mean over seeds, from :func:`toolkit.report.curves.set_accuracy`."""
    rows = sets[sets["accuracy_n"] > 0].assign(model=sets["model"].astype(str))
    means = rows.groupby(["eval_set", "model"])["accuracy_mean"].mean().unstack("model")
    means["all"] = rows.groupby("eval_set")["accuracy_mean"].mean()
    means = means.sort_values("all")
    shown = (100 * means).map(lambda v: "" if pd.isna(v) else f"{v:.1f}")
    return markdown_table(shown.reset_index().rename(columns={"eval_set": "set"}))
