"""The layer contract: the bottom of the model side.

- :mod:`~models.registry.store`: the name store (:class:`Registry`, :class:`LayerSpec`, :class:`ConfigError`);
- :mod:`~models.registry.layers`: the instance YAMLs use (:data:`LAYERS`) and :func:`register_attention`;
- :mod:`~models.registry.binding`: argument binding and the nominal-width rule;
- :mod:`~models.registry.values`: a row's argument values, read safely (never evaluated) and written in flow style;
- :mod:`~models.registry.protocol`: what attention modules, gated blocks and detection heads offer the rest.
"""

from models.registry.binding import (accepted_parameters, attention_arguments, attention_spec, bind_arguments, is_int,
                                     nominal_width_problem, scaled_width)
from models.registry.layers import LAYERS, LOCATIONS, attention_specs, register_attention
from models.registry.store import KINDS, ConfigError, LayerSpec, Registry, RowContext

__all__ = ["KINDS", "LAYERS", "LOCATIONS", "ConfigError", "LayerSpec", "Registry", "RowContext", "accepted_parameters",
           "attention_arguments", "attention_spec", "attention_specs", "bind_arguments", "is_int",
           "nominal_width_problem", "register_attention", "scaled_width"]
