"""The README's how-to code runs as written (in a fresh process, so its registrations do
not leak into the registries other tests walk)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Add your own"


def howto_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return re.findall(r"```python\n(.*?)```", text[start : end if end != -1 else None], re.S)


def run_script(path: Path, script: str) -> None:
    """Runs ``script`` in a fresh process (strict dtype promotion, one CPU device); it must
    exit 0 and print README OK."""
    path.write_text(script)
    env = {**os.environ, "JAX_NUMPY_DTYPE_PROMOTION": "strict", "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)  # one device is enough here
    done = subprocess.run(
        [sys.executable, str(path)], cwd=path.parent, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "README OK" in done.stdout


def test_readme_howto_registers_and_uses_every_kind_of_entry(tmp_path):
    blocks = howto_blocks()
    assert len(blocks) >= 2, "the how-to section lost its code blocks"
    script = "\n".join(blocks) + (
        "\nassert 'wide_mlp' in tk.models.names() and 'taylor_ce' in tk.losses.names()"
        "\nassert tk.evaluate(nnx_run, ds.test)['accuracy'][0] > 0.8"
        "\nassert 'adam_nesterov' in tk.optimizers.names() and 'dead_pixels' in tk.shifts.names()"
        "\nassert 'digits_small' in tk.data.names() and len(ds.train) == 500"
        # A 200-step MLP on 500 digits is far above chance (10%) on clean data, and the shift
        # really corrupts: accuracy falls as the fraction of dead pixels grows.
        "\nacc = table.set_index('severity')['accuracy']"
        "\nassert acc[0] > 0.8 and acc[0] > acc[1] > acc[3] > acc[5], acc"
        "\nprint('README OK')\n"
    )
    run_script(tmp_path / "howto.py", script)


def test_readme_uncertainty_example_runs(tmp_path):
    """The uncertainty section's code, with fewer steps and members, runs as written and
    gives what its comments say."""
    text = (ROOT / "README.md").read_text()
    start = text.index("## Uncertainty and OOD methods")
    (block,) = re.findall(
        r"```python\n(.*?)```", text[start : text.index("\n## ", start + 5)], re.S
    )
    assert "steps=2000" in block and "range(5)" in block
    script = "import toolkit as tk\n" + block.replace("steps=2000", "steps=100").replace(
        "range(5)", "range(2)"
    )
    script += (
        "\nassert features.shape == (len(ds.test), 100) and logits.shape == (len(ds.test), 10)"
        "\nood = table[table['kind'] == 'ood'].iloc[0]"
        "\nassert all(0 <= ood[f'auroc_{n}'] <= 1 for n in tk.ood.scorers.names())"
        "\nassert 0.5 < table.loc[0, 'coverage_lac'] <= 1"
        "\nprint('README OK')\n"
    )
    run_script(tmp_path / "uncertainty.py", script)
