"""Build: planned rows -> modules, and the one entry of the whole way, :func:`parse_model` (read -> plan -> build).

The layer table (YOLOv5's: from, n, params, module, arguments, and each row's notes) is printed as rows are built;
the rows' warnings (another project reads a row differently) follow it, printed whether or not the table is.
A model too large to allocate is refused from its plan, before any weight exists.
"""

from __future__ import annotations

import torch
from torch import nn
from ultralytics.utils import LOGGER

from models.patches import default_activation, head_legacy
from models.registry.arguments import build_failure
from models.parse.stale import check_stale_from
from models.parse.plan import Row, plan_rows
from models.parse.read import (MAX_PARAMS, SCREEN_PARAMS, check_model_keys, check_multiples, model_activation,
                               model_scale, rows_of)
from models.registry import ConfigError, is_int


def parse_model(d: dict, ch: int = 3, verbose: bool = True) -> tuple[nn.Sequential, list[int]]:
    """Build the layers of a YOLO YAML dict. Returns (layers, indices of layers whose outputs are kept)."""
    source = d.get("yaml_file", "<dict>")
    check_model_keys(d, source)
    check_stale_from(d)  # a row inserted by hand without shifting the later 'from' indices
    depth, width, max_channels, scale = model_scale(d)
    check_multiples(depth, width, source)
    act = model_activation(d, source)
    with default_activation(act):
        plan = plan_rows(d, rows_of(d), ch, depth, width, max_channels, scale)
        check_size(plan, source)
        return build_rows(plan, verbose)


def _rough_params(r: Row, c1: int | list) -> float:
    """An over-estimate of a row's parameters from its widths alone (screens for models that need an exact count)."""
    c1 = sum(c1) if isinstance(c1, list) else c1  # CBLinear's parts
    c2 = (sum(r.c2) if isinstance(r.c2, list) else r.c2) or c1
    reps = r.args[2] if r.spec.kind == "repeat" and len(r.args) > 2 and is_int(r.args[2]) else r.n
    if r.spec.kind == "attention":
        return 100.0 * c1 * c1 * r.n
    return 9.0 * (c1 + 2 * reps * c2) * c2


def check_size(plan: list[Row], source: str) -> None:
    """Refuse a model over :data:`MAX_PARAMS` before any weight is allocated (exact count on the meta device)."""
    chs = {r.i: r.c2 for r in plan}
    rough = sum(_rough_params(r, (chs.get(r.inputs[0]) or 3) if r.inputs[0] >= 0 else 3) for r in plan)
    if rough <= SCREEN_PARAMS:
        return
    with torch.device("meta"):
        sizes = [(sum(p.numel() for p in m.parameters()), r) for m, r in zip(build_modules(plan), plan)]
    total = sum(n for n, _ in sizes)
    if total > MAX_PARAMS:
        top = ", ".join(f"layer {r.i} ({r.name}) {n / 1e6:,.0f} M" for n, r in sorted(sizes, key=lambda x: -x[0])[:3])
        raise ConfigError(f"{source}: the model would have {total / 1e6:,.0f} M parameters (limit "
                          f"{MAX_PARAMS / 1e6:,.0f} M): largest {top}. Check width_multiple and the channel counts.")


def build_modules(plan: list[Row]):
    """The module of every planned row, in order (a generator: a failing row stops the build with its location)."""
    for r in plan:
        spec, args, kwargs = r.spec, r.args, r.kwargs
        try:
            with head_legacy(spec.cls, r.legacy):
                m = nn.Sequential(*(spec.cls(*args, **kwargs) for _ in range(r.n))) if r.n > 1 else spec.cls(*args, **kwargs)
        except ConfigError as e:  # a block's own row check (C3Att, ELANAtt: the attention it names)
            raise ConfigError(f"{r.where}: {e}") from None
        except Exception as e:
            raise ConfigError(f"{r.where}: {build_failure(r.name, spec.cls, args, kwargs, e)}") from e
        if r.legacy is not None:
            m.legacy = r.legacy  # the instance keeps the flag it was built with
        if spec.post_build is not None:  # e.g. SPPF: YOLOv5 rows keep the activation on cv1
            spec.post_build(m, args)
        yield m


def build_rows(plan: list[Row], verbose: bool = True) -> tuple[nn.Sequential, list[int]]:
    """Build the planned rows; returns (layers, indices of layers whose outputs are kept)."""
    if verbose:
        LOGGER.info(f"\n{'':>3}{'from':>20}{'n':>3}{'params':>10}  {'module':<40}{'arguments':<30}")
    layers, save = [], []
    for r, m_ in zip(plan, build_modules(plan)):
        m_.np = sum(x.numel() for x in m_.parameters())
        m_.i, m_.f, m_.type = r.i, r.f, r.name
        if verbose:
            shown = [*r.args, r.kwargs] if r.kwargs else r.args
            shown = [a if not isinstance(a, nn.Module) else type(a).__name__ for a in shown]
            LOGGER.info(f"{r.i:>3}{r.f!s:>20}{r.shown_n:>3}{m_.np:10.0f}  {r.name:<40}{shown!s:<30}")
            for note in r.notes + list(getattr(m_, "build_notes", None) or []):
                LOGGER.info(f"{'':>36}note: {note}")
        fs = r.f if isinstance(r.f, list) else [r.f]
        save.extend(j for x, j in zip(fs, r.inputs) if x != -1)  # outputs read by a later layer other than the next
        layers.append(m_)
    for warning in (w for r in plan for w in r.warnings):  # under the table, and shown without it
        LOGGER.warning(warning)
    return nn.Sequential(*layers), sorted(set(save))
