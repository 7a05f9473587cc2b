"""Populations: many models trained at once in one compiled program (``jax.vmap``).

    from toolkit.population import group_into_populations
    from toolkit.training import train_population
    configs = [TrainConfig(model="mlp", loss=loss, learning_rate=lr, seed=seed, steps=6000)
               for loss in ("softmax_cross_entropy", "softmax_focal") for lr in (1e-3, 1e-2)
               for seed in range(3)]
    for members in group_into_populations(configs, max_size=16):
        runs = train_population(ds, [configs[i] for i in members])

Members of one population share the program (``population_key``: model, optimizer,
schedule, batch size, steps, ...) and may differ in seed, loss, learning rate, weight
decay and training labels. ``tk.train`` is the population of one: the same trainer
(:mod:`toolkit.training`) and the same programs (:mod:`.program`).
On several local devices, ``shard="population"`` splits the members over them and
``shard="data"`` splits every member's batches over them; ``shard="auto"`` picks by the
rule in :mod:`.sharding` (population axis when there are at least as many members as
devices), which the sweep runner uses.
"""

from toolkit.population.grouping import (
    POPULATION_FIELDS,
    check_population,
    group_into_populations,
    population_key,
)
from toolkit.population.sharding import Placement, choose_mode, plan

__all__ = [
    "POPULATION_FIELDS",
    "Placement",
    "check_population",
    "choose_mode",
    "group_into_populations",
    "plan",
    "population_key",
]
