"""The fields every sweep config has, with their defaults (a starting ConfigDict).

def get_config(variant=""):
    config = base_config("my_sweep", dataset="mnist1d")
    config.models = ("mlp", "cnn")
    ...
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

__all__ = ["CHECKPOINT_EVERY", "CHECKPOINT_INTERVAL_S", "base_config", "runner_fields"]

CHECKPOINT_EVERY = 5  # chunks: a run checkpoints at most every this many chunks...
# ...and at most once per this many seconds. An orbax save has a fixed cost whatever the
# model's size, hundreds of small-model training steps (``python -m benchmarks.checkpoint``);
# spaced by time, saves cost a small model little of its training, and a killed run loses
# at most this much.
CHECKPOINT_INTERVAL_S = 60.0


def base_config(experiment: str, *, dataset: str) -> ml_collections.ConfigDict:
    """A ConfigDict with the runner's options, the base training config and data axes.

    ``train`` holds TrainConfig fields shared by every trial; ``model_hparams``,
    ``loss_hparams`` and ``optimizer_hparams`` map a name to its hyperparameters;
    ``data_axes`` are the training-data axes; ``evals`` names each evaluation
    (:mod:`toolkit.sweep.evals`). ``executor``: auto | inline | process | submitit |
    population; ``workers``: 0 = one per core; a run checkpoints at the end and, on the way,
    every ``checkpoint_every`` chunks but at most once per ``checkpoint_interval_s`` seconds
    (0: every ``checkpoint_every`` chunks; :class:`~toolkit.sweep.recording.SaveSchedule`);
    ``tensorboard``: also write each run's curve as TensorBoard event files in
    ``runs/<run_id>/tensorboard`` (:class:`toolkit.writers.TensorBoardWriter`).

    ``tune`` (:mod:`toolkit.sweep.tuning`): with ``trials`` = T > 0, every cell (a trial of
    ``sweep(config)`` without its seed) first trains T tuning runs at seed ``tune.seed``
    (trial 0: the config's values; trials 1.. draw the hyperparameters named by ``over`` --
    "learning_rate", "weight_decay", "loss", "optimizer", "model" -- from the registries'
    search spaces); then, for each rule in ``select`` (:mod:`toolkit.selection`: "id_val",
    "oracle", "default"), the trial it picks on the ``checkpoint`` ("final" or "best") rows is
    run at every seed of the sweep. ``trials=0``: no tuning, the sweep runs as written.
    """
    config = ml_collections.ConfigDict()
    config.experiment = experiment
    config.dataset = dataset
    config.dataset_kwargs = ml_collections.ConfigDict()
    config.train = ml_collections.ConfigDict(
        {
            "model": "mlp",
            "loss": "softmax_cross_entropy",
            "optimizer": "adam",
            "learning_rate": 1e-3,
            "batch_size": 100,
            "steps": 1000,
            "seed": 0,
            "schedule": "constant",
            "warmup_steps": 0,
            "weight_decay": config_dict.placeholder(float),
            "grad_clip": config_dict.placeholder(float),
            "log_every": config_dict.placeholder(int),
        }
    )
    config.model_hparams = ml_collections.ConfigDict()
    config.loss_hparams = ml_collections.ConfigDict()
    config.optimizer_hparams = ml_collections.ConfigDict()
    config.data_axes = ml_collections.ConfigDict(
        {
            "label_noise": 0.0,
            "label_noise_kind": "symmetric",
            "train_size": config_dict.placeholder(int),
            "imbalance": config_dict.placeholder(float),
            "validation_fraction": 0.1,  # held out of train, stratified; 0.0: none
        }
    )
    config.group_by = ("model", "optimizer")
    config.evals = ml_collections.ConfigDict()
    config.executor = "auto"
    config.workers = 0
    config.checkpoint_every = CHECKPOINT_EVERY
    config.checkpoint_interval_s = CHECKPOINT_INTERVAL_S
    config.tensorboard = False  # True: each run's curve also as TensorBoard events
    config.population_size = config_dict.placeholder(int)
    config.submitit = ml_collections.ConfigDict({"cluster": config_dict.placeholder(str)})
    config.tune = ml_collections.ConfigDict(
        {
            "trials": 0,
            "over": ("learning_rate", "loss"),
            "select": ("id_val",),
            "seed": 1000,
            "checkpoint": "final",
        }
    )
    return config


def runner_fields() -> dict[str, tuple[str, ...]]:
    """The top-level fields the runner reads (``""``) and the fields of its sections with a
    fixed set of fields (``"tune"``): a config field outside these is its sweep's own."""
    config = base_config("", dataset="")
    return {"": tuple(config.keys()), "tune": tuple(config.tune.keys())}
