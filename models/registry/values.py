"""A row's argument values, both ways: reading a row's argument safely (nothing is evaluated) and writing a value in flow style.

A YAML is input from strangers. String arguments are symbols (``nc``, ``anchors``), Python literals (parsed with
``ast.literal_eval``), plain words such as ``nearest``, or whitelisted activation constructors. :func:`flow` writes a
value so that ``yaml.safe_load`` reads back exactly that value (rows written by the tools, rows shown in messages).
"""

from __future__ import annotations

import ast
import json
import re

import yaml
from torch import nn

from models.registry.store import ConfigError

# ----------------------------------------------------------------------------------------------------------------------
# Values in flow style (round-trip through yaml.safe_load)


def flow(v) -> str:
    if isinstance(v, bool):
        return "True" if v else "False"
    if v is None:
        return "null"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v != v:
            return ".nan"
        if v in (float("inf"), float("-inf")):
            return ".inf" if v > 0 else "-.inf"
        r = repr(v)
        if "e" in r and "." not in r.split("e")[0]:
            mant, exp = r.split("e")
            r = f"{mant}.0e{exp if exp[0] in '+-' else '+' + exp}"
        return r
    if isinstance(v, str):
        if re.fullmatch(r"[A-Za-z_][\w.\-()+*/ ]*", v) and not v.endswith(" "):
            try:
                if yaml.safe_load(f"[{v}]") == [v]:
                    return v
            except yaml.YAMLError:
                pass
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(flow(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{flow(k)}: {flow(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} value {v!r} to a model YAML")


# ----------------------------------------------------------------------------------------------------------------------
# Safe argument values

ACTIVATIONS = {
    "SiLU": nn.SiLU,
    "ReLU": nn.ReLU,
    "ReLU6": nn.ReLU6,
    "LeakyReLU": nn.LeakyReLU,
    "Hardswish": nn.Hardswish,
    "Mish": nn.Mish,
    "GELU": nn.GELU,
    "Sigmoid": nn.Sigmoid,
    "Tanh": nn.Tanh,
    "Identity": nn.Identity,
}
ACT_RE = re.compile(r"^\s*(?:nn\.|torch\.nn\.)?(\w+)\s*\((.*)\)\s*$", re.S)
WORD_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


def parse_activation(spec: str) -> nn.Module:
    """Build an activation from text like ``nn.LeakyReLU(0.1)``: whitelisted class, literal arguments only."""
    m = ACT_RE.match(spec)
    if not m or m.group(1) not in ACTIVATIONS:
        raise ValueError(f"'{spec}' is not an allowed activation; allowed: {', '.join(f'nn.{k}(...)' for k in ACTIVATIONS)}")
    name, inner = m.groups()
    try:
        call = ast.parse(f"f({inner})", mode="eval").body
        args = [ast.literal_eval(a) for a in call.args]
        kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
    except (SyntaxError, ValueError) as e:
        raise ValueError(f"'{spec}': activation arguments must be literals") from e
    return ACTIVATIONS[name](*args, **kwargs)


def parse_arg(a, symbols: dict, where: str):
    """Resolve one YAML argument: symbols, literals and plain words; reject anything that looks like code."""
    if isinstance(a, str):
        if a in symbols:
            return symbols[a]
        try:
            return ast.literal_eval(a)
        except (ValueError, SyntaxError):
            pass
        if ACT_RE.match(a):
            try:
                return parse_activation(a)
            except ValueError as e:
                raise ConfigError(f"{where}: {e}") from None
        if WORD_RE.match(a):
            return a  # e.g. 'nearest'
        raise ConfigError(f"{where}: argument {a!r} is not a number, literal, known symbol or plain word; "
                          "YAML arguments are never evaluated as code")
    if isinstance(a, list):
        return [parse_arg(x, symbols, where) for x in a]
    if isinstance(a, dict):
        return {k: parse_arg(v, symbols, where) for k, v in a.items()}
    return a


