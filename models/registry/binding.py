"""How a row's arguments bind to a class, the nominal-width rule, and the errors a bad row gets.

The parser, the blocks that take an attention module by name (``C3Att``, ``ResidualBlend``), the insertion tool and
the dialect layer bind arguments the same way and fail with the same :class:`ConfigError`:

- :func:`bind_arguments`: YAML arguments against the class signature (old hyperparameter names renamed, with a note);
- :func:`scaled_width`: a YAML's channel count times ``width_multiple``, capped by ``max_channels``, rounded to 8;
- :func:`nominal_width_problem`: the one check (and wording) of a nominal width against a layer's real input width;
- :func:`attention_arguments`: an attention row's optional first argument checked, the rest bound.
"""

from __future__ import annotations

import inspect
from typing import Mapping

from ultralytics.utils.ops import make_divisible

from models.registry.layers import LAYERS
from models.registry.store import ConfigError, LayerSpec


def scaled_width(nominal: float, width: float = 1.0, max_channels: float = float("inf")) -> int:
    """The nominal-width rule: a YAML channel count times ``width_multiple``, capped, rounded to a multiple of 8."""
    return make_divisible(min(nominal, max_channels) * width, 8)


def nominal_width_problem(nominal: int, c_in: int, width: float = 1.0, max_channels: float = float("inf")) -> str:
    """'' when the nominal width ``nominal`` scales to ``c_in``; else what is wrong and the fix, in one wording:
    "1024 channels, which width_multiple 0.25 scales to 256, but its input (the 'from' layer) has 512 channels
    (write 2048, or leave it out)"."""
    scaled = scaled_width(nominal, width, max_channels)
    if scaled == c_in:
        return ""
    exact = c_in / width if width else c_in
    fix = (f"write {int(exact)}, or leave it out" if float(exact).is_integer()
           and scaled_width(exact, width, max_channels) == c_in else "leave it out")
    return (f"{nominal} channels, which width_multiple {width:g} scales to {scaled}, but its input (the 'from' layer) "
            f"has {c_in} channels ({fix})")


def accepted_parameters(cls) -> list[str]:
    """Constructor parameters after the first (the input channels), as a YAML row may name them."""
    return list(inspect.signature(cls).parameters)[1:]


def bind_arguments(cls, args: list, kwargs: dict, where: str, renamed: Mapping[str, str] | None = None,
                   notes: list[str] | None = None) -> dict:
    """Check ``cls(*args, **kwargs)`` against the signature; return the keywords with old names renamed.

    ``renamed`` maps accepted old hyperparameter names to current ones; each rename is added to ``notes``.
    Raises :class:`ConfigError` naming ``where``, the problem and the accepted parameters.
    """
    kwargs = dict(kwargs)
    for old, new in (renamed or {}).items():
        if old in kwargs:
            if new in kwargs:
                raise ConfigError(f"{where}: {cls.__name__} got both '{old}' (the old name) and '{new}'; write '{new}' only")
            kwargs[new] = kwargs.pop(old)
            if notes is not None:
                notes.append(f"'{old}' is the old name of '{new}'")
    try:
        inspect.signature(cls).bind(*args, **kwargs)
    except TypeError as e:
        params = ", ".join(accepted_parameters(cls))
        old = f" (old names: {', '.join(f'{o} -> {n}' for o, n in renamed.items())})" if renamed else ""
        raise ConfigError(f"{where}: bad arguments for {cls.__name__}: {e}. It accepts: {params}{old}") from None
    return kwargs


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)



def attention_arguments(spec: LayerSpec, args: list, c_in: int, where: str, width: float = 1.0,
                        max_channels: float = float("inf"), notes: list[str] | None = None) -> tuple[list, dict]:
    """An attention row's arguments -> (positional hyperparameters, keywords), checked against the input width.

    ``args`` is what the row writes after the module name: an optional nominal channel count (the width a YOLOv5
    YAML writes before ``width_multiple``), positional hyperparameters and an optional trailing dict of keywords.
    """
    args = list(args)
    kwargs = args.pop() if args and isinstance(args[-1], dict) else {}
    if args and is_int(args[0]):
        problem = nominal_width_problem(args.pop(0), c_in, width, max_channels)
        if problem:
            raise ConfigError(f"{where}: {spec.name} was given {problem}: attention modules take their input "
                              "channels from the 'from' layer")
    kwargs = bind_arguments(spec.cls, [c_in, *args], kwargs, where, spec.renamed, notes)
    return args, kwargs


def attention_spec(name, where: str) -> LayerSpec:
    """The registered attention module ``name``; :class:`ConfigError` for unknown names and non-attention layers."""
    if not isinstance(name, str):
        raise ConfigError(f"{where}: the attention module must be a registered name, got {name!r}")
    try:
        spec = LAYERS.get(name)
    except KeyError as e:
        raise ConfigError(f"{where}: {e.args[0]}") from None
    if spec.kind != "attention":
        raise ConfigError(f"{where}: '{name}' is a '{spec.kind}' layer, not an attention module. "
                          f"Attention modules: {', '.join(LAYERS.names('attention'))}")
    return spec
