"""Each configuration against a named baseline, paired by seed, Holm-corrected.

For every candidate group and metric, the runs of the candidate and of the baseline (the
group of the same architecture and data axes whose loss is the baseline loss) that share
a seed form pairs (both finished, both metric values finite). Per comparison:

- ``mean_difference``: mean over pairs of candidate minus baseline;
- ``ci_low``, ``ci_high``: 95 % percentile bootstrap CI of that mean (pairs resampled with
  replacement, a fresh ``numpy.random.default_rng(seed)`` per comparison, so each row is
  reproducible and independent of the table's order; Efron & Tibshirani 1993);
- ``p_value``: two-sided paired t-test (``scipy.stats.ttest_rel``);
- ``p_holm``: Holm-Bonferroni adjusted p-values over every comparison of the table (Holm
  1979), and ``significant`` = ``p_holm <= alpha``.

With few seeds the t-test's normality assumption carries the p-value; the bootstrap CI
of 3-5 pairs is narrow (it cannot see beyond the observed differences): read it as a
description, the corrected p-value as the test.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from toolkit.report.stats import finished, group_keys, key_strings, series_labels
from toolkit.report.tables import markdown_table

__all__ = ["BASELINE", "HIGHER_IS_BETTER", "compare", "holm", "paired", "significance_table"]

BASELINE = "softmax_cross_entropy"
"""The default baseline loss."""

HIGHER_IS_BETTER = {
    "id_accuracy": True,
    "corrupted_accuracy": True,
    "corrupted_ece_ts": False,
    "ood_auroc_msp": True,
}
"""Metrics compared (per-run columns of ``per_run``) and their direction."""


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (NaN stays NaN and is not counted in m).

    With the m finite p-values sorted ascending, p_(i) becomes
    ``max_{j <= i} min(1, (m - j + 1) p_(j))`` (1-based): rejecting where the adjusted
    value is <= alpha controls the family-wise error rate at alpha.
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full_like(p, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = finite.size
    order = finite[np.argsort(p[finite], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out


def paired(
    candidate: Sequence[float],
    baseline: Sequence[float],
    *,
    resamples: int = 10_000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, float]:
    """Mean difference, percentile bootstrap CI and paired t-test p-value of two paired
    samples (``candidate[i]`` and ``baseline[i]`` from the same seed). CI and p-value are
    NaN with fewer than two pairs, the p-value also when every difference is the same."""
    a, b = np.asarray(candidate, np.float64), np.asarray(baseline, np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired samples need equal 1-d shapes, got {a.shape} and {b.shape}")
    diff = a - b
    n = diff.size
    out = {"n": n, "mean_difference": float(diff.mean()) if n else np.nan}
    if n < 2:
        return out | {"ci_low": np.nan, "ci_high": np.nan, "p_value": np.nan}
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, n, size=(resamples, n))].mean(axis=1)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    if np.ptp(diff) <= 1e-12:  # no spread (up to rounding): the t statistic is undefined
        p_value = np.nan
    else:
        with warnings.catch_warnings():  # near-identical pairs: scipy's precision warning
            warnings.simplefilter("ignore", RuntimeWarning)
            p_value = float(scipy_stats.ttest_rel(a, b).pvalue)
    return out | {"ci_low": float(low), "ci_high": float(high), "p_value": p_value}


def compare(
    runs: pd.DataFrame,
    *,
    baseline: str = BASELINE,
    metrics: Mapping[str, bool] = HIGHER_IS_BETTER,
    ignore: Sequence[str] = (),
    alpha: float = 0.05,
    resamples: int = 10_000,
    seed: int = 0,
) -> pd.DataFrame:
    """Every group against the baseline group of its context, for every metric.

    Args:
      runs: ``per_run`` rows (with ``group_id``, ``seed``, ``status``, ``loss``).
      baseline: the baseline's loss name.
      metrics: per-run columns to compare, and whether higher is better.
      ignore: config keys that do not define the context (the tuned hparams: a tuned
        candidate is compared with the baseline at the baseline's own selected hparams).
      alpha: family-wise error rate of the Holm correction over the whole table.

    Returns:
      One row per (candidate, baseline, metric) with the context keys, ``candidate``,
      ``baseline`` (labels), ``metric``, ``n`` (pairs), ``mean_difference``, ``ci_low``,
      ``ci_high``, ``p_value``, ``p_holm``, ``significant`` and ``better`` (the candidate's
      mean is better in the metric's direction).

    Raises:
      ValueError: ``baseline`` is not a loss of ``runs``.
    """
    losses = sorted(runs["loss"].astype(str).unique())
    if baseline not in losses:
        raise ValueError(f"baseline loss {baseline!r} is not in these runs; losses: {losses}")
    context = [k for k in group_keys(runs) if k not in ("loss", "loss_hparams", *ignore)]
    groups = runs.drop_duplicates("group_id").set_index("group_id")
    labels = pd.Series(series_labels(groups.reset_index()).to_numpy(), index=groups.index)
    healthy = runs[finished(runs)]
    key = key_strings(groups, context)
    records = []
    for gid, group in groups.iterrows():
        if group["loss"] == baseline:
            continue
        same = key == key[gid]
        for base_id in groups.index[same & (groups["loss"] == baseline)]:
            for metric, higher in metrics.items():
                if metric not in runs or not runs[metric].notna().any():
                    continue
                a = _by_seed(healthy[healthy["group_id"] == gid], metric)
                b = _by_seed(healthy[healthy["group_id"] == base_id], metric)
                seeds = a.index.intersection(b.index).sort_values()
                result = paired(a[seeds], b[seeds], resamples=resamples, seed=seed)
                diff = result["mean_difference"]
                records.append(
                    {k: group[k] for k in context}
                    | {"candidate": labels[gid], "baseline": labels[base_id], "metric": metric}
                    | result
                    | {
                        "better": bool(diff > 0 if higher else diff < 0)
                        if np.isfinite(diff)
                        else None
                    }
                )
    columns = [*context, "candidate", "baseline", "metric", "n", "mean_difference"]
    columns += ["ci_low", "ci_high", "p_value", "better"]
    table = pd.DataFrame(records, columns=columns)
    order = [*(k for k in ("model", *context) if k in table), "candidate", "baseline"]
    table = table.sort_values(list(dict.fromkeys(order)), kind="stable", ignore_index=True)
    table["p_holm"] = holm(table["p_value"].to_numpy(np.float64))
    table["significant"] = table["p_holm"] <= alpha
    return table


def _by_seed(runs: pd.DataFrame, metric: str) -> pd.Series:
    """``metric`` per seed (finite values; runs of one group sharing a seed averaged)."""
    return runs.groupby("seed")[metric].mean().dropna()


def significance_table(table: pd.DataFrame, scale: Mapping[str, float]) -> str:
    """Markdown of :func:`compare`: one table per metric; survivors of the correction are
    the only rows marked (``**yes**``). ``scale`` maps a metric to its display factor."""
    parts = []
    for metric, rows in table.groupby("metric", sort=False):
        factor = scale.get(metric, 1.0)
        shown = pd.DataFrame(
            {
                **({"model": rows["model"].astype(str)} if "model" in rows else {}),
                "candidate": rows["candidate"],
                "baseline": rows["baseline"],
                "pairs": rows["n"].astype(str),
                "difference [95% CI]": [
                    _difference(r.mean_difference, r.ci_low, r.ci_high, factor)
                    for r in rows.itertuples()
                ],
                "p": rows["p_value"].map(_p),
                "p (Holm)": rows["p_holm"].map(_p),
                "significant": ["**yes**" if s else "" for s in rows["significant"]],
            }
        )
        parts.append(f"### {metric}\n\n{markdown_table(shown)}")
    return "\n".join(parts)


def _difference(mean: float, low: float, high: float, factor: float) -> str:
    if not np.isfinite(mean):
        return ""
    text = f"{mean * factor:+.2f}"
    return f"{text} [{low * factor:+.2f}, {high * factor:+.2f}]" if np.isfinite(low) else text


def _p(value: float) -> str:
    return "" if not np.isfinite(value) else f"{value:.3g}"
