"""Selection rules on hand-made evaluation rows (the expected picks worked out by hand)."""

from __future__ import annotations

import pandas as pd
import pytest

from toolkit import selection


def _rows() -> pd.DataFrame:
    """Cell "a": trial 0 has the best clean validation accuracy (0.9), trial 2 the best mean
    shifted validation accuracy ((0.7 + 0.5) / 2 = 0.6 vs trial 0's 0.45), trial 1 the best
    of all but collapsed. Cell "b": trial 0 diverged; trials 1 and 2 tie at 0.8."""
    spec = [
        # cell, trial, status, clean val, shifted val (two sets), clean test
        ("a", 0, "finished", 0.9, (0.5, 0.4), 0.88),
        ("a", 1, "collapsed", 0.95, (0.9, 0.9), 0.1),
        ("a", 2, "finished", 0.8, (0.7, 0.5), 0.79),
        ("b", 0, "diverged", None, (None, None), None),
        ("b", 1, "finished", 0.8, (0.3, 0.3), 0.7),
        ("b", 2, "finished", 0.8, (0.4, 0.4), 0.7),
    ]
    rows = []
    for cell, trial, status, clean, shifted, test in spec:
        run = f"{cell}{trial}"
        base = {"run_id": run, "cell": cell, "trial": trial, "role": "tune", "status": status}
        rows.append(base | {"split": "validation", "kind": "clean", "accuracy": clean})
        for i, acc in enumerate(shifted):
            rows.append(
                base | {"split": "validation", "kind": "shift", "eval_set": i, "accuracy": acc}
            )
        rows.append(base | {"split": "test", "kind": "clean", "accuracy": test})
    # A seed run at cell a's hparams: never a candidate.
    rows.append(
        {"run_id": "s", "cell": "a", "trial": 1, "role": "seed", "status": "finished"}
        | {"split": "validation", "kind": "clean", "accuracy": 1.0}
    )
    return pd.DataFrame(rows)


def _picks(rule: str) -> dict[str, int]:
    table = selection.select(_rows(), rule)
    assert set(table["rule"]) == {rule}
    return dict(zip(table["cell"], table["trial"], strict=True))


def test_id_val_picks_the_best_finished_clean_validation_run_lowest_trial_on_ties():
    assert _picks("id_val") == {"a": 0, "b": 1}


def test_oracle_picks_the_best_mean_shifted_validation_run():
    assert _picks("oracle") == {"a": 2, "b": 2}


def test_default_picks_trial_zero_even_where_it_diverged():
    assert _picks("default") == {"a": 0, "b": 0}


def test_candidates_count_finished_tuning_runs_only():
    table = selection.select(_rows(), "id_val").set_index("cell")
    assert table.loc["a", "candidates"] == 2 and table.loc["b", "candidates"] == 2
    assert table.loc["a", "score"] == pytest.approx(0.9)


def test_old_rows_read_as_final_test_rows_with_status_from_diverged():
    old = pd.DataFrame({"run_id": ["x", "y"], "diverged": [False, True]})
    filled = selection.with_row_defaults(old)
    assert list(filled["split"]) == ["test", "test"]
    assert list(filled["checkpoint"]) == ["final", "final"]
    assert list(filled["status"]) == ["finished", "diverged"]


def test_unknown_rule_names_the_valid_ones():
    with pytest.raises(ValueError, match="id_val"):
        selection.select(_rows(), "best_test")
