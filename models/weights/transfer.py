"""Pretrained weights across a changed architecture.

Loading ``base.pt`` into a model whose YAML inserts or removes layers must not match tensors by key
name: after an insertion at layer 10, ``model.11.*`` of the new model is ``model.10.*`` of the old
one, and a name-based loader silently drops (or, worse, loads a same-shaped neighbour into) every
layer after the insertion point. Here the two layer lists are aligned structurally instead:

1. Every layer gets a signature: its class, its structure (the module tree: every submodule's name and
   class and, for torch layers, their constructor settings such as kernel, stride, groups, widths and
   activation slopes, but not BatchNorm eps/momentum or ``inplace`` flags, which loaders and
   ``initialize_weights`` change) and its state-dict shapes.
2. The body (all layers but the detection head) is aligned by a monotone sequence alignment that
   maximises the number of pairs with equal signatures; a layer class may also declare that it
   extends another (``TRANSFER_FROM = ("C3",)`` on :class:`models.layers.attention_blocks.C3Att`), which
   allows a partial pair in the same place.
3. Every pair is checked against the graph: the layers it reads must be paired with each other
   (looking through unpaired single-input layers, i.e. inserted or removed attention). A pair with
   tensors that fails is dropped, until nothing changes (a rewired Concat has no tensors and stays). A tensor is therefore only ever loaded into the layer that plays the same
   role, never into a different layer that merely has the same shape.
4. The detection heads are paired by role (last layer, same class, same inputs; YOLOv5's Detect and
   YOLOv7's IDetect pair with each other: an IDetect is folded into plain convs, a Detect's convs go into an
   IDetect whose implicit layers start as the identity); their tensors load where key and shape agree (a
   new class count leaves the class-logit convs skipped), after ultralytics' own class-name remapping.

Identity start: after the transfer, every layer that received nothing (or only part of its tensors)
is asked to compute the identity (``init_identity()``: zero gamma / zero last layer), so the new model
predicts exactly what the pretrained one did. Modules that cannot (sigmoid gates such as SE, CBAM, ECA)
are named in the report; insert them with ``--identity-blend`` (``ResidualBlend``) when an exact start
matters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from ultralytics.utils import LOGGER

from models.registry.protocol import DetectionHead, IdentityInit, init_identity

INPUT = -1  # the image
# attributes that do not change what a layer's weights mean: training-time settings, flags loaders flip, and the
# parser's per-layer tags (index, 'from', type name, parameter count)
NOT_STRUCTURE = frozenset({"training", "inplace", "eps", "momentum", "i", "f", "type", "np"})
PLAIN = (bool, int, float, str, tuple, type(None))


class TransferError(ValueError):
    """The source cannot be aligned (no YOLO layer list)."""


@dataclass
class Layer:
    index: int
    type: str
    module: nn.Module
    inputs: list[int]  # absolute indices; INPUT for the image
    signature: tuple


@dataclass
class TransferReport:
    """What a transfer did; ``str()`` gives the one-line summary, :meth:`details` the full account."""

    source: str
    transferred: int = 0
    total: int = 0
    pairs: list[tuple[int, int, str]] = field(default_factory=list)  # (base index, new index, 'same'|'partial'|'head')
    new_layers: list[tuple[int, str]] = field(default_factory=list)
    partial: list[tuple[int, str, int, int, int, str]] = field(default_factory=list)  # new i, type, loaded, of, base i, base type
    removed: list[tuple[int, str]] = field(default_factory=list)  # base layers with no place in the new model
    skipped_tensors: list[tuple[int, str, str, str]] = field(default_factory=list)  # new i, type, key, reason
    identity: list[tuple[int, str]] = field(default_factory=list)  # started as the identity
    not_identity: list[tuple[int, str]] = field(default_factory=list)  # could not
    notes: list[str] = field(default_factory=list)

    @property
    def mapping(self) -> dict[int, int]:
        """Base layer index -> new layer index, for every paired layer."""
        return {b: n for b, n, _ in self.pairs}

    def __str__(self) -> str:
        shown = self.new_layers if len(self.new_layers) <= 12 else self.new_layers[:10]
        new = ", ".join(f"{i} {t}" for i, t in shown) or "none"
        if len(shown) < len(self.new_layers):
            new += f", ... ({len(self.new_layers)} in all)"
        return f"transferred {self.transferred}/{self.total} tensors from {self.source}; new layers: {new}; skipped: {self._skipped()}"

    def _skipped(self) -> str:
        parts = [f"base {i} {t} (no place in this model)" for i, t in self.removed]
        by_layer: dict[tuple[int, str], list[tuple[str, str]]] = {}
        for i, t, k, why in self.skipped_tensors:
            by_layer.setdefault((i, t), []).append((k, why))
        for (i, t), items in by_layer.items():
            first_k, first_why = items[0]
            more = f" and {len(items) - 1} more" if len(items) > 1 else ""
            parts.append(f"{i} {t} {first_k}{more} ({first_why})")
        return "; ".join(parts) if parts else "none"

    def details(self) -> str:
        lines = [str(self)]
        moved = _runs([(b, n) for b, n, _ in self.pairs if b != n])
        if moved:
            lines.append("  moved (base -> here): " + ", ".join(moved))
        for i, t, got, of, b, bt in self.partial:
            lines.append(f"  partial: {i} {t} got {got}/{of} tensors from base {b} {bt}")
        if self.identity:
            lines.append("  identity start: " + ", ".join(f"{i} {t}" for i, t in self.identity))
        if self.not_identity:
            lines.append(
                "  cannot start as the identity (predictions will differ from the base model before training): "
                + ", ".join(f"{i} {t}" for i, t in self.not_identity)
                + ". Their output is a gate such as x*sigmoid(.), which is never exactly x; insert them with "
                "--identity-blend (wrapped in ResidualBlend) for an exact start."
            )
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _runs(pairs: list[tuple[int, int]]) -> list[str]:
    """[(10, 11), (11, 12), (12, 13), (20, 22)] -> ['10-12 -> 11-13', '20 -> 22']."""
    out, k = [], 0
    while k < len(pairs):
        j = k
        while j + 1 < len(pairs) and pairs[j + 1][0] == pairs[j][0] + 1 and pairs[j + 1][1] == pairs[j][1] + 1:
            j += 1
        (b0, n0), (b1, n1) = pairs[k], pairs[j]
        out.append(f"{b0} -> {n0}" if j == k else f"{b0}-{b1} -> {n0}-{n1}")
        k = j + 1
    return out


# ----------------------------------------------------------------------------------------------------------------------
# Layers and signatures


def structure(module: nn.Module) -> tuple:
    """The module tree: (name, class, settings) per submodule; settings are the plain constructor attributes of
    torch layers (kernel, stride, padding, groups, slopes, ...), minus :data:`NOT_STRUCTURE`."""
    out = []
    for name, m in module.named_modules():
        settings = ()
        if type(m).__module__.startswith("torch.nn"):
            settings = tuple(sorted((k, v) for k, v in vars(m).items()
                                    if not k.startswith("_") and k not in NOT_STRUCTURE and isinstance(v, PLAIN)))
        out.append((name, type(m).__name__, settings))
    return tuple(out)


def signature(module: nn.Module, n_inputs: int) -> tuple:
    """Class, structure and tensor shapes of one layer (what must agree for its weights to mean the same)."""
    shapes = tuple((k, tuple(v.shape)) for k, v in module.state_dict().items())
    return type(module).__name__, structure(module), shapes, n_inputs


def layers_of(model: nn.Module) -> list[Layer]:
    seq = getattr(model, "model", None)
    if not isinstance(seq, nn.Sequential) or not all(hasattr(m, "f") for m in seq):
        raise TransferError(
            f"{type(model).__name__} has no YOLO layer list (model.model with 'from' indices); "
            "pass a YOLO checkpoint (ours or ultralytics') or model"
        )
    out = []
    for i, m in enumerate(seq):
        fs = m.f if isinstance(m.f, list) else [m.f]
        inputs = [INPUT if (i == 0 and x == -1) else (i + x if x < 0 else x) for x in fs]
        out.append(Layer(i, getattr(m, "label", type(m).__name__), m, inputs, signature(m, len(fs))))
    return out


def load_source(weights, trust: bool = False) -> tuple[nn.Module, str]:
    """(model, display name) from a checkpoint path (read with unrestricted unpickling only if ``trust``), a
    checkpoint dict or a model."""
    if isinstance(weights, (str, Path)):
        from models.weights.checkpoint import load_model

        return load_model(weights, trust=trust), Path(weights).name
    if isinstance(weights, dict):  # a models.weights.checkpoint.read_checkpoint dict (any supported format)
        from models.weights.checkpoint import CheckpointError, model_from_checkpoint

        try:
            return model_from_checkpoint(weights), "checkpoint"
        except CheckpointError as e:
            raise TransferError(str(e)) from None
    if isinstance(weights, nn.Module):
        name = getattr(weights, "pt_path", None)
        return weights, Path(name).name if name else "pretrained model"
    raise TransferError(f"cannot transfer from {type(weights).__name__}")


# ----------------------------------------------------------------------------------------------------------------------
# Alignment


def _compatible(b: Layer, n: Layer) -> str | None:
    if b.signature == n.signature:
        return "same"
    extends = n.module.TRANSFER_FROM if isinstance(n.module, IdentityInit) else ()
    if b.signature[0] in extends and len(b.inputs) == len(n.inputs):
        return "partial"
    return None


def _align_sequences(base: list[Layer], new: list[Layer]) -> list[tuple[int, int, str]]:
    """Monotone alignment maximising 2 per equal pair + 1 per declared partial pair (dynamic programming).

    Among equally good alignments the earliest pairs win: when a module identical to its neighbour is inserted
    after it, the existing layer keeps its weights and the one after it is the new one.
    """
    m, n = len(base), len(new)
    score = [[0] * (n + 1) for _ in range(m + 1)]  # score[i][j]: best for base[i:], new[j:]
    kinds = {}
    for i in range(m - 1, -1, -1):
        for j in range(n - 1, -1, -1):
            best = max(score[i + 1][j], score[i][j + 1])
            k = _compatible(base[i], new[j])
            if k:
                kinds[i, j] = k
                best = max(best, score[i + 1][j + 1] + (2 if k == "same" else 1))
            score[i][j] = best
    pairs, i, j = [], 0, 0
    while i < m and j < n:
        k = kinds.get((i, j))
        if k and score[i][j] == score[i + 1][j + 1] + (2 if k == "same" else 1):
            pairs.append((base[i].index, new[j].index, k))
            i, j = i + 1, j + 1
        elif score[i][j] == score[i][j + 1]:
            j += 1  # new[j] has no counterpart: an inserted layer
        else:
            i += 1  # base[i] has no counterpart: a removed layer
    return pairs


def align(base: list[Layer], new: list[Layer]) -> list[tuple[int, int, str]]:
    """Pairs (base index, new index, kind) of layers that play the same role in both models."""
    pairs = _align_sequences(base[:-1], new[:-1])
    hb, hn = base[-1], new[-1]
    if hb.signature[0] == hn.signature[0] or (isinstance(hn.module, DetectionHead) and hn.module.pairs_with(hb.module)):
        pairs.append((hb.index, hn.index, "same" if hb.signature == hn.signature else "head"))

    while True:  # drop pairs whose inputs are not paired with each other, until stable
        b2n = {b: n for b, n, _ in pairs}
        paired_new = set(b2n.values())

        def through(layers, idx, paired, mapping):
            seen = 0
            while idx != INPUT and idx not in paired and seen < len(layers):
                ins = layers[idx].inputs
                if len(ins) != 1:
                    return None
                idx, seen = ins[0], seen + 1
            return INPUT if idx == INPUT else (mapping(idx) if idx in paired else None)

        keep = []
        for b, n, k in pairs:
            eb = [through(base, x, b2n, b2n.get) for x in base[b].inputs]
            en = [through(new, x, paired_new, lambda v: v) for x in new[n].inputs]
            # Layers without tensors (Concat, Upsample, pools) stay paired when rewired: nothing of theirs is loaded,
            # and they keep marking the place of the layers that read them.
            if (None not in eb and eb == en) or not base[b].signature[2]:
                keep.append((b, n, k))
        if len(keep) == len(pairs):
            return pairs
        pairs = keep


# ----------------------------------------------------------------------------------------------------------------------
# Transfer


def _match_class_branch_width(head: nn.Module, src: nn.Module) -> bool:
    """ultralytics' Detect sizes its class branch by ``nc`` (``c3 = max(ch[0], min(nc, 100))``), so a new class count
    can change the hidden width and lose every pretrained class-branch tensor. As ultralytics' own ``load`` does,
    rebuild the branch at the source's width (only its last conv is sized for the new classes)."""
    from copy import deepcopy

    from ultralytics.nn.modules import Detect

    if not (isinstance(head, Detect) and isinstance(src, Detect)) or not hasattr(head, "cv2"):
        return False
    if [m[0].conv.in_channels for m in head.cv2] != [m[0].conv.in_channels for m in src.cv2]:
        return False
    changed = False
    for attr in ("cv3", "one2one_cv3"):
        dst, branch = getattr(head, attr, None), getattr(src, attr, None)
        if dst is None or branch is None or dst[0][-1].in_channels == branch[0][-1].in_channels:
            continue
        branch = deepcopy(branch)
        for s, d in zip(branch, dst):
            if s[-1].out_channels != d[-1].out_channels:
                s[-1] = nn.Conv2d(s[-1].in_channels, d[-1].out_channels, 1)
        setattr(head, attr, branch.to(dst[0][-1].weight.device, dst[0][-1].weight.dtype).train(dst.training))
        changed = True
    if changed:
        head.bias_init()
    return changed


def transfer_weights(model: nn.Module, weights, identity_init: bool = True, verbose: bool = True,
                     trust: bool = False) -> TransferReport:
    """Load ``weights`` (path, checkpoint dict or model) into ``model`` by structural alignment; see the module doc.
    ``trust``: read a path with unrestricted unpickling (a file one made oneself)."""
    src, name = load_source(weights, trust)
    base, new = layers_of(src), layers_of(model)
    report = TransferReport(source=name)
    if getattr(src, "is_fused", lambda: False)() and not getattr(model, "is_fused", lambda: False)():
        report.notes.append(f"{name} is fused for inference (BatchNorm folded into convs): transfer from an unfused checkpoint")
    report.pairs = align(base, new)
    updates: dict[str, torch.Tensor] = {}
    for b, n, kind in report.pairs:
        if kind == "head" and _match_class_branch_width(new[n].module, base[b].module):
            report.notes.append(f"{n} {new[n].type}: class branch rebuilt at {name}'s hidden width to keep its hidden "
                                "layers (ultralytics does the same)")
        bsd, nsd = base[b].module.state_dict(), new[n].module.state_dict()
        identity_keys = set()
        if kind == "head" and isinstance(new[n].module, DetectionHead):  # the head says what it takes from its source
            head_notes: list[str] = []
            mapped = new[n].module.transfer_state(base[b].module, name, head_notes)
            if mapped is not None:
                bsd, identity_keys = mapped
            report.notes += [f"{n} {note}" for note in head_notes]
        if kind == "head" and hasattr(model, "_remap_cls_by_names"):  # ultralytics: class-logit rows by class name
            csd = {f"model.{n}.{k}": v.float() for k, v in bsd.items()}
            remapped = model._remap_cls_by_names(csd, src, verbose=verbose)
            report.transferred += remapped
            done = {k for k in nsd if f"model.{n}.{k}" not in csd}
        else:
            done = set()
        got = len(done)
        for k, v in nsd.items():
            if k in done or (k in identity_keys and k not in bsd):
                continue
            if k in bsd and bsd[k].shape == v.shape:
                updates[f"model.{n}.{k}"] = bsd[k]
                got += 1
            elif kind != "partial" or k in bsd:
                why = f"shape {list(bsd[k].shape)} in {name}, {list(v.shape)} here" if k in bsd else f"not in base {b} {base[b].type}"
                report.skipped_tensors.append((n, new[n].type, k, why))
        if kind == "partial":
            report.partial.append((n, new[n].type, got, len(nsd), b, base[b].type))
    report.total = len(model.state_dict())  # after any class-branch rebuild
    missing = model.load_state_dict(updates, strict=False)
    assert not missing.unexpected_keys, missing.unexpected_keys
    report.transferred += len(updates)

    paired_new = {n: k for _, n, k in report.pairs}
    paired_base = {b for b, _, _ in report.pairs}
    report.new_layers = [(x.index, x.type) for x in new if x.index not in paired_new]
    report.removed = [(x.index, x.type) for x in base if x.index not in paired_base]
    if identity_init and report.pairs:
        for x in new:
            if x.index in paired_new and paired_new[x.index] != "partial":
                continue
            (report.identity if init_identity(x.module) else report.not_identity).append((x.index, x.type))
    if verbose:
        LOGGER.info(report.details())
    return report
