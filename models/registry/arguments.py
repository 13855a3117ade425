"""Why a layer's constructor refused a row's arguments, said in the row's terms.

A row's hyperparameters reach the constructor as the YAML wrote them; a wrong kind of value (a list, ``None`` or
text where a number goes) or a zero that the layer divides by fails inside the layer's code with a TypeError or
ZeroDivisionError that names neither the argument nor the fix. :func:`build_failure` names them, from the
constructor's signature and defaults.
"""

from __future__ import annotations

import inspect


def _kind(v) -> str:
    if v is None:
        return "no value (None)"
    if isinstance(v, bool):
        return "true/false"
    if isinstance(v, (int, float)):
        return "a number"
    if isinstance(v, str):
        return f"the text {v!r}"
    if isinstance(v, (list, tuple)):
        return "a list"
    if isinstance(v, dict):
        return "a mapping"
    return type(v).__name__


def _expected(default) -> str | None:
    """What a parameter takes, judged by its default (None when the default says nothing)."""
    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, (int, float)):
        return "a number"
    if isinstance(default, str):
        return "a word"
    return None


def _fits(value, default) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    return True


def _typed_default(p: inspect.Parameter):
    """The default to judge a value by: the parameter's own, or for ``reduction: float | None = None`` (None: the
    module's own default, e.g. its form's) a number, from the annotation."""
    if p.default is not None:
        return p.default
    parts = {t.strip() for t in str(p.annotation).split("|")}
    return 1 if parts & {"int", "float"} and not parts & {"str", "bool", "list", "tuple", "dict"} else None


def signature_text(cls) -> str:
    """``CBAM(c1, reduction=16, kernel_size=7)``: what the constructor takes."""
    try:
        params = list(inspect.signature(cls).parameters.values())
    except (TypeError, ValueError):
        return cls.__name__
    shown = [p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}" for p in params
             if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    return f"{cls.__name__}({', '.join(shown)})"


def build_failure(name: str, cls, args: list, kwargs: dict, error: BaseException) -> str:
    """One line for a constructor that raised on a row's arguments: the argument(s) of the wrong kind, or the zero it
    divides by, each with what the layer takes there; else the error with the constructor's signature."""
    failed = f"{type(error).__name__}: {error}"
    try:
        bound = inspect.signature(cls).bind_partial(*args, **kwargs)
    except (TypeError, ValueError):
        return f"{signature_text(cls)} does not take the {len(args) - 1} argument(s) given ({failed})"
    params = inspect.signature(cls).parameters
    problems = []
    for k, (pname, value) in enumerate(bound.arguments.items()):
        if k == 0:
            continue  # the input channels, which the parser supplies
        default = _typed_default(params[pname])
        if default is inspect.Parameter.empty or default is None or (value is None and params[pname].default is None):
            continue
        shown = f"default {default!r}" if params[pname].default is not None else "left out: the module's own default"
        expected = _expected(default)
        if expected and not _fits(value, default):
            problems.append(f"{pname} is {_kind(value)}, but {name} takes {expected} there ({shown})")
        elif isinstance(error, ZeroDivisionError) and _fits(value, default) and value == 0 and default != 0:
            problems.append(f"{pname} is 0, which {name} divides by ({shown}; it must be 1 or more)")
    if not problems:
        return f"building {name}{tuple(args)} failed: {failed}; the layer is {signature_text(cls)}"
    return (f"{'; '.join(problems)}. The layer is {signature_text(cls)}: its input channels come from the 'from' "
            f"layer, hyperparameters by position or by name ({failed})")
