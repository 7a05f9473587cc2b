"""Sweep configs -> trials with content-addressed run ids (grids: ``toolkit.sweep.search``).

A sweep config file defines ``get_config(variant="") -> ConfigDict`` and
``sweep(config) -> list[dict]``; each dict names what one trial changes relative to the
config's base (``config.train``, ``config.data_axes``, ``config.dataset``)::

    def sweep(config):
        return product(model=config.models, loss=config.losses, seed=range(config.seeds))

:func:`expand` turns these dicts into :class:`Trial` s with every registry default filled in,
so that a trial's :attr:`Trial.run_id` (a hash of everything that determines training) is
the same however the trial was written down.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from toolkit import losses, models, optimizers
from toolkit.registry import Registry
from toolkit.training import TrainConfig, json_ready

__all__ = [
    "AXES_DEFAULTS",
    "SPEC_KEYS",
    "SweepConfigError",
    "Trial",
    "expand",
    "run_id_of",
    "trial_from_record",
]


class SweepConfigError(ValueError):
    """A sweep config that cannot run; raised before any compute or any write."""


TRAIN_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))
AXES_DEFAULTS: dict[str, Any] = {
    "label_noise": 0.0,
    "label_noise_kind": "symmetric",
    "train_size": None,
    "imbalance": None,
    "validation_fraction": 0.1,  # 0.0: no validation split (toolkit.sweep.data)
}
SPEC_KEYS = (*TRAIN_FIELDS, *AXES_DEFAULTS, "dataset", "dataset_kwargs", "group", "variant")
# Set by the trainer from TrainConfig fields, so they may not hide in optimizer_hparams.
_OPTIMIZER_OWNED = (
    "learning_rate",
    "weight_decay",
    "schedule",
    "total_steps",
    "warmup_steps",
    "grad_clip",
)
_FLOAT_FIELDS = ("learning_rate", "weight_decay", "grad_clip")
_SHORT = {
    "learning_rate": "lr",
    "label_noise": "noise",
    "label_noise_kind": "noise_kind",
    "batch_size": "bs",
    "weight_decay": "wd",
}


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace: equal content gives equal text (and equal hashes)."""
    return json.dumps(json_ready(value), sort_keys=True, separators=(",", ":"))


def run_id_of(dataset: str, dataset_kwargs: Mapping, train: Mapping, data_axes: Mapping) -> str:
    """First 16 hex digits of sha256 over what determines training, and nothing else."""
    payload = {
        "dataset": dataset,
        "dataset_kwargs": dataset_kwargs,
        "train": train,
        "data_axes": data_axes,
    }
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:16]


def _tuples(value: Any) -> Any:
    """JSON lists back to tuples, so that Flax module fields stay hashable."""
    if isinstance(value, Mapping):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return tuple(_tuples(v) for v in value)
    return value


@dataclasses.dataclass(frozen=True)
class Trial:
    """One training run of a sweep, as written to ``runs/<run_id>/config.json``.

    ``tags`` label the run without changing what it trains (not in :attr:`run_id`): a tuned
    sweep's ``{"cell", "trial", "role"}`` (:mod:`toolkit.sweep.tuning`), copied into its rows.
    """

    experiment: str
    dataset: str
    dataset_kwargs: Mapping[str, Any]
    train: Mapping[str, Any]
    data_axes: Mapping[str, Any]
    group: str
    variant: str = ""
    tags: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def run_id(self) -> str:
        return run_id_of(self.dataset, self.dataset_kwargs, self.train, self.data_axes)

    def train_config(self) -> TrainConfig:
        fields = dict(self.train)
        for name in ("model_hparams", "loss_hparams", "optimizer_hparams"):
            fields[name] = _tuples(fields.get(name) or {})
        return TrainConfig(**fields)

    def to_json(self) -> dict[str, Any]:
        return json_ready({"run_id": self.run_id, **dataclasses.asdict(self)})

    @classmethod
    def from_json(cls, payload: Mapping[str, Any]) -> Trial:
        fields = {f.name: payload[f.name] for f in dataclasses.fields(cls) if f.name in payload}
        return cls(**fields)

    def describe(self) -> str:
        t = self.train
        return (
            f"model={t['model']!r}, loss={t['loss']!r}, optimizer={t['optimizer']!r}, "
            f"seed={t['seed']}"
        )


def trial_from_record(payload: Any, run_id: str) -> Trial:
    """The :class:`Trial` a run directory's ``config.json`` holds, checked to be run
    ``run_id``: its fields must hash to it. The payload is data, never code: names are only
    looked up in registries later. Raises ValueError for anything else (a torn, hand-edited
    or foreign file)."""
    if not isinstance(payload, Mapping):
        raise ValueError(f"config.json is not a JSON object (got {type(payload).__name__})")
    try:
        trial = Trial.from_json(payload)
        actual = trial.run_id
    except (TypeError, ValueError, KeyError, AttributeError) as error:
        raise ValueError(f"config.json is not a trial ({type(error).__name__}: {error})") from None
    if actual != run_id or payload.get("run_id") != run_id:
        raise ValueError(f"config.json describes run {actual!r}, not {run_id!r}")
    return trial


# -- expansion -------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """ConfigDicts (and FieldReferences) to plain dicts."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _resolve(registry: Registry, name: str, given: Mapping, drop: Sequence[str] = ()) -> dict:
    """Registry defaults updated by ``given``, minus keys the trainer sets itself."""
    clash = sorted(set(given) & set(drop))
    if clash:
        raise SweepConfigError(
            f"{registry.kind} hyperparameter {clash[0]!r} is set by the trainer; set it on the "
            f"trial instead (e.g. learning_rate=..., or the dataset's num_classes)"
        )
    return {k: v for k, v in registry.hparams(name, **given).items() if k not in drop}


def _number(name: str, value: Any) -> Any:
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return value
    return float(value) if name in _FLOAT_FIELDS else value


def _normalise(spec: Mapping[str, Any], config: Any) -> tuple[dict, dict, str, dict]:
    base_train = {k: v for k, v in _plain(config.get("train", {})).items()}
    unknown = sorted(set(base_train) - set(TRAIN_FIELDS))
    if unknown:
        raise SweepConfigError(
            f"config.train has unknown field {unknown[0]!r}; valid: {', '.join(TRAIN_FIELDS)}"
        )
    train = {**base_train, **{k: spec[k] for k in TRAIN_FIELDS if k in spec}}
    for field, table in (
        ("model", "model_hparams"),
        ("loss", "loss_hparams"),
        ("optimizer", "optimizer_hparams"),
    ):
        per_name = _plain(config.get(table, {}) or {}).get(train.get(field, ""), {})
        train[table] = {
            **_plain(base_train.get(table) or {}),
            **(per_name or {}),
            **_plain(spec.get(table) or {}),
        }
    cfg = TrainConfig(**{k: _number(k, v) for k, v in train.items()})
    train = dataclasses.asdict(cfg)
    train["model_hparams"] = _resolve(models.models, cfg.model, cfg.model_hparams, ["num_classes"])
    train["loss_hparams"] = _resolve(losses.losses, cfg.loss, cfg.loss_hparams)
    train["optimizer_hparams"] = _resolve(
        optimizers.optimizers, cfg.optimizer, cfg.optimizer_hparams, _OPTIMIZER_OWNED
    )
    axes = {**AXES_DEFAULTS, **_plain(config.get("data_axes", {}) or {})}
    axes.update({k: spec[k] for k in AXES_DEFAULTS if k in spec})
    bad = sorted(set(axes) - set(AXES_DEFAULTS))
    if bad:
        raise SweepConfigError(f"unknown data axis {bad[0]!r}; valid: {', '.join(AXES_DEFAULTS)}")
    if isinstance(axes["label_noise"], int | float) and not isinstance(axes["label_noise"], bool):
        axes["label_noise"] = float(axes["label_noise"])
    for name in ("imbalance", "validation_fraction"):
        if isinstance(axes[name], int) and not isinstance(axes[name], bool):
            axes[name] = float(axes[name])
    dataset = spec.get("dataset", config.get("dataset"))
    dataset_kwargs = _plain(spec.get("dataset_kwargs", config.get("dataset_kwargs", {})) or {})
    return json_ready(train), json_ready(axes), dataset, json_ready(dataset_kwargs)


def _label(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_label(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "x".join(map(_label, value))
    return repr(value) if isinstance(value, float) else str(value)


def _loss_label(train: Mapping[str, Any]) -> str:
    hp = {k: v for k, v in train["loss_hparams"].items() if v is not None}
    return f"{train['loss']}({_label(hp)})" if hp else train["loss"]


def _variants(trials: list[dict], group_by: Sequence[str]) -> list[str]:
    """The loss with its hyperparameters, plus every other field that varies in the group."""

    def fields(t: dict) -> dict[str, Any]:
        flat = {
            **{k: v for k, v in t["train"].items() if k not in ("seed", "loss", "loss_hparams")},
            **t["data_axes"],
            "dataset_kwargs": t["dataset_kwargs"],
        }
        return {k: v for k, v in flat.items() if k not in group_by}

    varying: dict[str, set[str]] = {}
    for t in trials:
        for key, value in fields(t).items():
            varying.setdefault(f"{t['group']}|{key}", set()).add(canonical_json(value))
    labels = []
    for t in trials:
        extra = [
            f"{_SHORT.get(k, k)}={_label(v)}"
            for k, v in fields(t).items()
            if len(varying[f"{t['group']}|{k}"]) > 1
        ]
        labels.append(" ".join([_loss_label(t["train"]), *extra]))
    return labels


def expand(config: Any, specs: Iterable[Mapping[str, Any]]) -> list[Trial]:
    """Trials from a sweep config and the dicts its ``sweep(config)`` returned.

    Each dict may set any :class:`~toolkit.training.TrainConfig` field, a data axis
    (``label_noise``, ``label_noise_kind``, ``train_size``, ``imbalance``,
    ``validation_fraction``: :mod:`toolkit.sweep.data`), ``dataset``,
    ``dataset_kwargs``, ``group`` or ``variant``; the rest comes from ``config.train``,
    ``config.data_axes`` and the per-name tables ``config.model_hparams[model]``,
    ``config.loss_hparams[loss]`` and ``config.optimizer_hparams[optimizer]``. Registry
    defaults are filled in, so equal trainings get equal run ids. Duplicates are dropped.
    """
    group_by = tuple(config.get("group_by", ("model", "optimizer")))
    rows, seen = [], set()
    for index, spec in enumerate(specs):
        spec = _plain(spec)
        unknown = sorted(set(spec) - set(SPEC_KEYS))
        if unknown:
            raise SweepConfigError(
                f"trial {index} sets unknown field {unknown[0]!r}; valid: {', '.join(SPEC_KEYS)}"
            )
        try:
            train, axes, dataset, dataset_kwargs = _normalise(spec, config)
        except (TypeError, ValueError) as error:
            raise SweepConfigError(f"trial {index} ({_brief(spec)}): {error}") from None
        flat = {**train, **axes, "dataset": dataset}
        missing = [k for k in group_by if k not in flat]
        if missing:
            raise SweepConfigError(
                f"group_by field {missing[0]!r} is not a trial field; valid: {', '.join(flat)}"
            )
        group = spec.get("group") or "/".join(_label(flat[k]) for k in group_by)
        row = {
            "dataset": dataset,
            "dataset_kwargs": dataset_kwargs,
            "train": train,
            "data_axes": axes,
            "group": str(group),
            "variant": spec.get("variant"),
        }
        key = run_id_of(dataset, dataset_kwargs, train, axes)
        if key in seen:
            warnings.warn(f"trial {index} repeats an earlier trial; it runs once", stacklevel=2)
            continue
        seen.add(key)
        rows.append(row)
    if not rows:
        raise SweepConfigError("the sweep has no trials")
    labels = _variants(rows, group_by)
    experiment = str(config.get("experiment") or "sweep")
    return [
        Trial(
            experiment,
            r["dataset"],
            r["dataset_kwargs"],
            r["train"],
            r["data_axes"],
            r["group"],
            r["variant"] or label,
        )
        for r, label in zip(rows, labels, strict=True)
    ]


def _brief(spec: Mapping[str, Any]) -> str:
    keys = ("model", "loss", "optimizer", "seed")
    return ", ".join(f"{k}={spec[k]!r}" for k in keys if k in spec) or "base config"
