"""Golden fixtures: outputs of the official implementations, and how to build and load ours to compare.

A fixture is a pair in ``tests/fixtures/golden/``: ``<name>.npz`` (data) and ``<name>.json`` (its sidecar). They are
numbers made by running the official code (or a re-implementation of a Caffe/Caffe2/TF/CuPy graph) outside the
project; no official code is in the project.

npz: ``state.<official key>`` (every state-dict entry of the official module; floats stored as float32, their values
exactly representable, integer buffers int64), ``input.<i>`` (float32-representable), ``eval.<i>`` and ``train.<i>``
(float64 outputs of the official module in eval / train mode, its state reloaded before every forward). Where the
official train-mode outputs were bit-identical to the eval ones, ``train.<i>`` is not stored and the sidecar says
``"train_outputs": "eval"``.

Sidecar keys read here: ``module`` (our registered name), ``C``, ``ours_ctor`` (keyword arguments that configure ours
as the official module, ``form`` included; old hyperparameter names are accepted as in a YAML row),
``keymap_to_ours`` and optionally ``keymap_proposed_for_official_form`` (official key -> ours, rules below),
``unmapped_ours`` (our keys the official module has no counterpart for; left at their init), ``repo``, ``commit``,
``reference`` (``official``, the default when absent, or ``port`` / ``pseudo-code`` where there is no official code).

Key map values: ``"our.key"`` copies (reshaped to our shape: a Linear (out, in) is our 1x1 conv (out, in, 1, 1));
a list copies to several of ours; ``None`` marks an official entry with no counterpart of its own (a tied copy of
another); a dict ``{"to": key, "reshape": shape, "perm": [dim, index], "rows": [a, b], "transpose": [d0, d1],
"center": true}`` applies those steps in this order (``center`` places the rows in the middle rows of ours, zeros
elsewhere). Several official keys mapped to one of ours are flattened and concatenated in map order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "golden"
ATOL = 1e-5


def fixture_names() -> list[str]:
    """Every fixture in the directory (an npz with its sidecar)."""
    return sorted(p.stem for p in FIXTURES.glob("*.json"))


@dataclass
class Fixture:
    name: str
    meta: dict
    arrays: dict

    @property
    def inputs(self) -> list[torch.Tensor]:
        n = len([k for k in self.arrays if k.startswith("input.")])
        return [torch.from_numpy(self.arrays[f"input.{i}"]).double() for i in range(n)]

    def expected(self, mode: str, i: int) -> torch.Tensor:
        key = f"{mode}.{i}"
        if mode == "train" and key not in self.arrays:
            if self.meta.get("train_outputs") != "eval":
                raise KeyError(f"{self.name}: no {key} and the sidecar does not say train_outputs: eval")
            key = f"eval.{i}"
        return torch.from_numpy(self.arrays[key]).double()

    @property
    def official_state(self) -> dict[str, torch.Tensor]:
        out = {}
        for k, a in self.arrays.items():
            if k.startswith("state."):
                t = torch.from_numpy(np.array(a))
                out[k[len("state."):]] = t.double() if t.is_floating_point() else t
        return out

    @property
    def keymap(self) -> dict:
        km = dict(self.meta.get("keymap_to_ours", {}))
        km.update(self.meta.get("keymap_proposed_for_official_form", {}))
        return km

    @property
    def source(self) -> str:
        return f"{self.meta['repo']}@{str(self.meta.get('commit', ''))[:7]}"


def load(name: str) -> Fixture:
    meta = json.loads((FIXTURES / f"{name}.json").read_text())
    with np.load(FIXTURES / f"{name}.npz") as z:
        arrays = {k: z[k] for k in z.files}
    return Fixture(name, meta, arrays)


def build_ours(fx: Fixture) -> torch.nn.Module:
    """``ours(C, **ours_ctor)`` through the registry and the YAML argument binder (old names renamed), in float64."""
    from models.registry import LAYERS, bind_arguments

    spec = LAYERS.get(fx.meta["module"])
    kwargs = dict(fx.meta.get("ours_ctor", {}))
    c = kwargs.pop("c1", fx.meta["C"])
    kwargs = bind_arguments(spec.cls, [c], kwargs, f"golden fixture {fx.name}", spec.renamed)
    torch.manual_seed(0)
    return spec.cls(c, **kwargs).double()


def _one(t: torch.Tensor, rule, own: dict) -> tuple[str, torch.Tensor]:
    if isinstance(rule, str):
        return rule, t
    key = rule["to"]
    if "reshape" in rule:
        t = t.reshape(rule["reshape"])
    if "perm" in rule:
        dim, index = rule["perm"]
        t = t.index_select(dim, torch.as_tensor(index))
    if "rows" in rule:
        a, b = rule["rows"]
        t = t[a:b]
    if "transpose" in rule:
        t = t.transpose(*rule["transpose"])
    if rule.get("center"):
        full = torch.zeros(own[key].shape, dtype=t.dtype)
        top = (full.shape[0] - t.shape[0]) // 2
        full[top:top + t.shape[0]] = t.reshape(t.shape[0], *full.shape[1:])
        t = full
    return key, t


def mapped_state(fx: Fixture, ours: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Our full state dict with the official values placed by the key map.

    Strict both ways: every official entry is mapped (or marked ``None``), every one of ours is filled except those
    the sidecar lists in ``unmapped_ours``; shapes must agree element for element.
    """
    own = ours.state_dict()
    official = fx.official_state
    km = fx.keymap
    unmapped_official = sorted(set(official) - set(km))
    if unmapped_official:
        raise AssertionError(f"{fx.name}: official entries without a key-map rule: {unmapped_official}")
    parts: dict[str, list[torch.Tensor]] = {}
    for key, rules in km.items():
        if key not in official:
            raise AssertionError(f"{fx.name}: key map names {key!r}, which the official state does not have")
        for rule in rules if isinstance(rules, list) else [rules]:
            if rule is None:
                continue
            ours_key, t = _one(official[key], rule, own)
            if ours_key not in own:
                raise AssertionError(f"{fx.name}: {key} -> {ours_key!r}, which ours ({type(ours).__name__}, "
                                     f"ours_ctor={fx.meta.get('ours_ctor')}) does not have; ours: {list(own)}")
            parts.setdefault(ours_key, []).append(t)
    left = sorted(set(own) - set(parts) - set(fx.meta.get("unmapped_ours", [])))
    if left:
        raise AssertionError(f"{fx.name}: our entries the official state does not fill: {left}")
    state = dict(own)
    for k, ts in parts.items():
        t = torch.cat([u.reshape(-1) for u in ts]) if len(ts) > 1 else ts[0]
        if t.numel() != own[k].numel():
            raise AssertionError(f"{fx.name}: {k}: official {t.numel()} values, ours {tuple(own[k].shape)}")
        state[k] = t.reshape(own[k].shape).to(own[k].dtype)
    return state


def max_differences(fx: Fixture, device: str | torch.device = "cpu",
                    dtype: torch.dtype = torch.float64) -> dict[str, float]:
    """``{"eval.0": max |ours - official|, "train.0": ...}`` with a fresh state before every forward; float64 on the
    CPU by default (tests/test_golden.py), or another device and dtype (tests/cuda/test_golden.py: CUDA, float32)."""
    ours = build_ours(fx)
    state = mapped_state(fx, ours)
    ours.to(device=device, dtype=dtype)
    out = {}
    for mode in ("eval", "train"):
        for i, x in enumerate(fx.inputs):
            ours.load_state_dict(state, strict=True)  # copies into ours' device and dtype
            ours.train(mode == "train")
            with torch.no_grad():
                y = ours(x.clone().to(device=device, dtype=dtype)).double().cpu()
            ref = fx.expected(mode, i)
            out[f"{mode}.{i}"] = float((y - ref).abs().max()) if y.shape == ref.shape else float("inf")
    return out
