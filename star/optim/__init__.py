"""The STAR learned-optimizer family (STAR, Hyperparam, Blackbox, No-Pre, No-Nom) as optax transformations.

See :mod:`star.optim.star` for the update (appendix "STAR in the code") and :mod:`star.optim.features` for the
accumulators and the 39 per-parameter features.
"""

from star.optim.convert import from_reference, load_meta_params, save_meta_params, to_reference
from star.optim.features import NUM_FEATURES, factored_dims, time_features
from star.optim.star import (
    PRESETS,
    StarConfig,
    StarState,
    apply_star,
    effective_decays,
    init_meta_params,
    meta_param_shapes,
    num_meta_params,
    preset,
    star_optimizer,
    validate_meta_params,
)

__all__ = [
    "NUM_FEATURES",
    "PRESETS",
    "StarConfig",
    "StarState",
    "apply_star",
    "effective_decays",
    "factored_dims",
    "from_reference",
    "init_meta_params",
    "load_meta_params",
    "meta_param_shapes",
    "num_meta_params",
    "preset",
    "save_meta_params",
    "star_optimizer",
    "time_features",
    "to_reference",
    "validate_meta_params",
]
