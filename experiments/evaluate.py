"""Evaluate the finished runs of an experiment on new shifts, without retraining.

    python -m experiments.evaluate results/loss_comparison --shifts iid_noise translation \
        --severities 1 3 5 --ood gaussian_noise
    python -m experiments.evaluate results/loss_comparison \
        --config experiments/configs/loss_comparison.py
    python -m experiments.evaluate results/loss_comparison --ood gaussian_noise \
        --scorers all --ood_validation uniform_noise --conformal lac aps raps \
        --selective msp energy --mc_samples 10 --ensemble

Each finished run's final checkpoint is restored and its rows (on the test split and, for
runs trained with one, the validation split) are appended to ``evals.jsonl`` (rows with an
existing run/checkpoint/split/set/severity replace the old ones for readers). A directory
that is a file or cannot be written is refused before anything is computed.
"""

from __future__ import annotations

import argparse
import sys


def evals_from_args(args: argparse.Namespace) -> dict:
    """The evals mapping the command line asks for."""
    evals: dict = {}
    if args.config:
        from toolkit.sweep import load_config

        config, _ = load_config(args.config)
        evals.update(config.get("evals", {}).to_dict() if config.get("evals") else {})
    if args.shifts:
        evals["shifts_cli"] = {
            "type": "shifts",
            "names": args.shifts,
            "severities": args.severities,
        }
    if args.ood:
        evals["ood_cli"] = {"type": "ood", "names": args.ood}
        if args.scorers:
            evals["ood_cli"]["scorers"] = "all" if args.scorers == ["all"] else args.scorers
        if args.ood_validation:
            evals["ood_cli"]["validation"] = args.ood_validation
    if args.conformal:
        evals["conformal_cli"] = {"type": "conformal", "methods": args.conformal,
                                  "alpha": args.alpha}  # fmt: skip
    if args.selective:
        evals["selective_cli"] = {"type": "selective", "scores": args.selective}
    if args.mc_samples is not None:
        evals["mc_dropout_cli"] = {"type": "mc_dropout", "samples": args.mc_samples}
    if args.ensemble:
        evals["ensemble_cli"] = {"type": "ensemble"}
    return evals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.evaluate",
        description=__doc__.split("\n\n")[0],
        allow_abbrev=False,
    )
    parser.add_argument("experiment_dir", help="results/<experiment>")
    parser.add_argument("--shifts", nargs="+", default=[], help="tk.shifts names")
    parser.add_argument("--severities", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    parser.add_argument("--ood", nargs="+", default=[], help="tk.ood names or dataset names")
    parser.add_argument("--scorers", nargs="+", default=[],
                        help="tk.ood.scorers names (or all) for the --ood sets")  # fmt: skip
    parser.add_argument("--ood_validation", nargs="+", default=[],
                        help="OOD sets (not in --ood) that choose scorer hparams")  # fmt: skip
    parser.add_argument("--conformal", nargs="+", default=[], help="lac, aps, raps")
    parser.add_argument("--alpha", type=float, default=0.1, help="conformal miscoverage")
    parser.add_argument("--selective", nargs="+", default=[], help="logit scores for AURC")
    parser.add_argument("--mc_samples", type=int, help="MC-dropout passes")
    parser.add_argument("--ensemble", action="store_true", help="ensembles of the seeds")
    parser.add_argument("--config", help="take the evals of this config file[:variant]")
    parser.add_argument("--no_progress", action="store_true")
    args = parser.parse_args(argv)

    from toolkit.sweep import SweepConfigError, reevaluate

    try:
        reevaluate(args.experiment_dir, evals_from_args(args), progress=not args.no_progress)
    except SweepConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
