"""End-to-end: the MNIST-1D table script, quick on every run and in full in the slow group."""

import pandas as pd
import pytest

from experiments import mnist1d_table


def test_table_script_writes_markdown_and_csv(tmp_path):
    mnist1d_table.main(
        ["--models", "linear", "cnn", "--seeds", "2", "--steps", "60", "--out", str(tmp_path)]
    )
    df = pd.read_csv(tmp_path / "mnist1d_table.csv")
    assert list(df["model"]) == ["linear", "linear", "cnn", "cnn"]
    assert list(df["params"]) == [410, 410, 5210, 5210]  # the reference parameter counts
    assert df["test_accuracy"].between(10, 100).all()
    text = (tmp_path / "mnist1d_table.md").read_text()
    assert "python -m experiments.mnist1d_table --models linear cnn" in text
    assert "| cnn | 5,210 |" in text and "| 94 |" in text
    assert not list(tmp_path.glob("*.tmp"))  # atomic writes leave no temporary files


def test_bad_arguments_are_rejected_before_training(tmp_path, capsys):
    with pytest.raises(SystemExit):
        mnist1d_table.main(["--models", "resnet", "--out", str(tmp_path)])
    assert "invalid choice: 'resnet'" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_reference_cnn_reaches_the_published_accuracy(tmp_path):
    """The published CNN (94%) at the reference settings, one seed, within 3 points."""
    mnist1d_table.main(["--models", "cnn", "--seeds", "1", "--out", str(tmp_path)])
    df = pd.read_csv(tmp_path / "mnist1d_table.csv")
    assert df["test_accuracy"].iloc[0] == pytest.approx(94.0, abs=3.0)
