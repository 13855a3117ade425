"""Anchor-based detection heads: YOLOv5's ``Detect`` and YOLOv7's ``IDetect`` and ``IAuxDetect``.

A YAML row ``[[17, 20, 23], 1, Detect, [nc, anchors]]`` (YOLOv5 v6.0 and YOLOv7 files) builds
:class:`AnchorDetect`; ``Detect`` with ``[nc]`` stays ultralytics' anchor-free head (the registry entry
of ``Detect`` hands rows with anchors over to ``AnchorDetect``). ``IDetect`` rows build :class:`IDetect`.

Both heads predict, per level and anchor, ``(x, y, w, h, objectness, classes...)`` with YOLOv5's decoding:
``xy = (2 sigmoid - 0.5 + cell) * stride`` and ``wh = (2 sigmoid)^2 * anchor``. Outputs follow the
ultralytics contract so its validator, predictor and exporter work unchanged:

- training: a list of per-level raw maps, shape ``(B, na, ny, nx, 5 + nc)`` (what the loss reads);
- inference: ``(y, raw maps)`` with ``y`` of shape ``(B, 4 + nc, N)``: xywh in input pixels, class scores
  already multiplied by objectness (with one class, the score is the objectness: YOLOv5 trains no class
  logit then);
- export (tracing): ``y`` alone, so the ONNX graph has a single output.

Anchors are kept as a buffer in units of their level's stride (as YOLOv5 keeps them), so they move with
``.to()``, are saved in checkpoints and can be replaced in place by AutoAnchor.
"""

from __future__ import annotations

import math
from copy import deepcopy

import torch
from torch import nn

from models.heads.loss import AnchorLoss, loss_hyp
from models.registry import LAYERS, ConfigError, RowContext
from models.registry.protocol import DetectionHead
from models.layers.yolov7 import ImplicitA, ImplicitM


def anchor_table(anchors, nl: int) -> tuple[torch.Tensor, bool]:
    """Anchors from a YAML value -> ``(nl, na, 2)`` pixel tensor and whether they are placeholders.

    ``anchors`` is a list of ``nl`` rows ``[w1, h1, w2, h2, ...]`` or an int (anchors per level, to be
    computed from the data by AutoAnchor, as YOLOv5 allows).
    """
    if isinstance(anchors, bool) or anchors is None:
        raise ValueError("the row passes 'anchors' but the YAML has no 'anchors:' key (a list of [w, h, ...] rows, "
                         "one per input level, or an int: anchors per level, computed from the data)")
    if isinstance(anchors, int):
        if anchors < 1:
            raise ValueError(f"anchors must be a positive number of anchors per level, got {anchors}")
        return torch.ones(nl, anchors, 2), True  # sized in setup_strides, evolved by AutoAnchor
    if not isinstance(anchors, (list, tuple)) or not all(isinstance(r, (list, tuple)) for r in anchors):
        raise ValueError(f"anchors must be a list of [w, h, w, h, ...] rows (one per level) or an int, got {anchors!r}")
    if len(anchors) != nl:
        raise ValueError(f"anchors has {len(anchors)} rows but the head takes {nl} input levels; give one row per level")
    lengths = {len(r) for r in anchors}
    if len(lengths) != 1 or lengths.pop() % 2 or not anchors[0]:
        raise ValueError(f"every anchors row needs the same even number of values (w, h pairs), got {anchors!r}")
    flat = [v for r in anchors for v in r]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in flat):
        raise ValueError(f"anchor sizes must be positive numbers (pixels), got {anchors!r}")
    return torch.tensor(flat, dtype=torch.float32).view(nl, -1, 2), False


class AnchorHead(DetectionHead, nn.Module):
    """Shared machinery of the anchor-based heads: raw maps, decoding, strides, bias init, loss hook."""

    max_det = 300  # set by the trainer/predictor through DetectionModel.set_head_attr
    agnostic_nms = False
    export = False  # returning the decoded tensor alone is also triggered by tracing

    def __init__(self, nc: int = 80, anchors=3, ch: tuple[int, ...] = ()):
        super().__init__()
        if not isinstance(nc, int) or isinstance(nc, bool) or nc < 1:
            raise ValueError(f"nc must be a positive int, got {nc!r}")
        self.nc = nc
        self.no = nc + 5  # x, y, w, h, objectness, classes
        self.nl = len(ch)
        table, placeholder = anchor_table(anchors, self.nl)
        self.na = table.shape[1]
        self.anchors_from_data = placeholder  # AutoAnchor must compute them
        self.register_buffer("anchors", table)  # pixels until setup_strides divides them by the strides
        self.register_buffer("stride", torch.zeros(self.nl), persistent=False)
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in ch)

    # -- forward -------------------------------------------------------------------------------------------------------

    def level_logits(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Raw prediction map of level ``i`` (B, na * no, ny, nx)."""
        return self.m[i](x)

    def forward(self, x: list[torch.Tensor]):
        raw = []
        for i in range(self.nl):
            p = self.level_logits(i, x[i])
            b, _, ny, nx = p.shape
            raw.append(p.view(b, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous())
        if self.training:
            return raw
        y = self.decode(raw)
        if self.export or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            return y
        return y, raw

    def decode(self, raw: list[torch.Tensor]) -> torch.Tensor:
        """Raw maps -> (B, 4 + nc, N): xywh in input pixels and objectness-weighted class scores."""
        out = []
        for i, p in enumerate(raw):
            b, na, ny, nx, _ = p.shape
            p = p.sigmoid()
            yv, xv = torch.meshgrid(torch.arange(ny, device=p.device, dtype=p.dtype),
                                    torch.arange(nx, device=p.device, dtype=p.dtype), indexing="ij")
            cell = torch.stack((xv, yv), -1).view(1, 1, ny, nx, 2) - 0.5
            anchor_px = (self.anchors[i] * self.stride[i]).view(1, na, 1, 1, 2).to(p.dtype)
            xy = (p[..., :2] * 2 + cell) * self.stride[i]
            wh = (p[..., 2:4] * 2) ** 2 * anchor_px
            obj = p[..., 4:5]
            scores = p[..., 5:] * obj if self.nc > 1 else obj
            out.append(torch.cat((xy, wh, scores), -1).view(b, -1, 4 + self.nc))
        return torch.cat(out, 1).permute(0, 2, 1)

    # -- set-up (called once by AttentionDetectionModel) ---------------------------------------------------------------

    def setup_strides(self, strides: torch.Tensor) -> torch.Tensor:
        """Take the measured strides of the input levels, put anchors in stride units, order them, initialise biases.

        ``strides`` comes from the model's shape probe (:func:`models.parse.probe.head_strides`).
        """
        self.stride = strides.to(torch.float32).clone()
        if self.anchors_from_data:  # placeholder squares of 2 to 5 strides; AutoAnchor replaces them
            sizes = 2.0 * 2.5 ** (torch.arange(self.na) / max(self.na - 1, 1))
            self.anchors[:] = sizes.view(1, -1, 1).expand(self.nl, -1, 2)
        else:
            self.anchors /= self.stride.view(-1, 1, 1)
        self.check_anchor_order()
        self.init_biases()
        return self.stride.clone()

    def check_anchor_order(self) -> None:
        """Flip the anchor levels if their sizes run against the stride order (small anchors belong to P3)."""
        area = (self.anchors * self.stride.view(-1, 1, 1)).prod(-1).mean(-1)
        da, ds = area[-1] - area[0], self.stride[-1] - self.stride[0]
        if da != 0 and da.sign() != ds.sign():
            self.anchors[:] = self.anchors.flip(0) * (self.stride.flip(0) / self.stride).view(-1, 1, 1)

    def init_biases(self) -> None:
        """YOLOv5's prior: about 8 objects per 640x640 image at each level, class probability 0.6 / nc."""
        for conv, s in zip(self.m, self.stride.tolist()):
            b = conv.bias.data.view(self.na, self.no)
            b[:, 4] += math.log(8 / (640 / s) ** 2)
            b[:, 5:] += math.log(0.6 / (self.nc - 0.99999))

    # -- training ------------------------------------------------------------------------------------------------------

    def make_criterion(self, model: nn.Module):
        """The loss for this head (AttentionDetectionModel.init_criterion calls this): YOLOv5's assignment, or
        YOLOv7's OTA assignment when the model YAML's ``hyp:`` has ``loss_ota: 1`` (models/heads/loss_ota.py)."""
        if loss_hyp(model.yaml)["loss_ota"]:
            from models.heads.loss_ota import OTALoss

            return OTALoss(model)
        return AnchorLoss(model)

    # -- weight transfer -----------------------------------------------------------------------------------------------

    def pairs_with(self, source: nn.Module) -> bool:
        """YOLOv5's Detect and YOLOv7's IDetect / IAuxDetect heads exchange weights (see :meth:`transfer_state`)."""
        return isinstance(source, AnchorHead)

    def transfer_state(self, source: nn.Module, source_name: str, notes: list[str]):
        """YOLOv5's Detect and YOLOv7's IDetect are one head but for IDetect's implicit layers: an IDetect source loading
        into a head without them is folded first (YOLOv7's reparameterisation); a source without them loading into an
        IDetect leaves the implicit layers to start as the identity (ImplicitA 0, ImplicitM 1)."""
        if not isinstance(source, AnchorHead):
            return None
        if isinstance(source, IDetect) and not isinstance(self, IDetect):
            folded = deepcopy(source)
            folded.fuse()
            notes.append(f"{type(self).__name__}: {source_name}'s IDetect implicit layers folded into its convs")
            return folded.state_dict(), set()
        own = set()
        if isinstance(self, IDetect) and not isinstance(source, IDetect):
            with torch.no_grad():
                for attr, value in (("ia", 0.0), ("im", 1.0)):
                    for j, layer in enumerate(getattr(self, attr)):
                        if isinstance(layer, (ImplicitA, ImplicitM)):
                            layer.implicit.fill_(value)
                            own.add(f"{attr}.{j}.implicit")
            notes.append(f"{type(self).__name__}: implicit layers start as the identity ({source_name} has a plain "
                         "Detect head)")
        return source.state_dict(), own

    def extra_repr(self) -> str:
        return f"nc={self.nc}, na={self.na}, nl={self.nl}"


class AnchorDetect(AnchorHead):
    """YOLOv5's anchor-based Detect head: one 1x1 conv per level predicting ``na * (5 + nc)`` channels."""


class IDetect(AnchorHead):
    """YOLOv7's training head: Detect with an ImplicitA offset before and an ImplicitM scale after each 1x1 conv.

    :meth:`fuse` folds both into the conv (``model.fuse()`` calls it), giving YOLOv7's deploy-time head.
    """

    def __init__(self, nc: int = 80, anchors=3, ch: tuple[int, ...] = ()):
        super().__init__(nc, anchors, ch)
        self.ia = nn.ModuleList(ImplicitA(c) for c in ch)
        self.im = nn.ModuleList(ImplicitM(self.no * self.na) for _ in ch)

    def level_logits(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return self.im[i](self.m[i](self.ia[i](x)))

    @torch.no_grad()
    def fuse(self) -> None:
        """conv(x + a) * m == conv'(x): bias' = (b + W a) m, W' = W m. Idempotent."""
        for i, conv in enumerate(self.m):
            if isinstance(self.ia[i], nn.Identity):
                continue
            w = conv.weight
            a = self.ia[i].implicit.view(1, -1, 1, 1).to(w.dtype)
            scale = self.im[i].implicit.view(-1).to(w.dtype)
            bias = conv.bias + (w * a).sum((1, 2, 3))
            conv.bias.copy_(bias * scale)
            conv.weight.mul_(scale.view(-1, 1, 1, 1))
            self.ia[i], self.im[i] = nn.Identity(), nn.Identity()


class IAuxDetect(IDetect):
    """YOLOv7's training head with auxiliary outputs (yolov7-w6/e6/d6/e6e): IDetect on the first ``nl`` inputs (the
    lead head) and a plain 1x1 conv per level on the other ``nl`` inputs (the auxiliary head), same anchors.

    A row lists ``2 * nl`` inputs, lead levels first: ``[[114, ..., 121], 1, IAuxDetect, [nc, anchors]]``.
    Training returns the ``nl`` lead maps followed by the ``nl`` auxiliary maps; YOLOv7's lead-guided assignment
    (``ComputeLossAuxOTA``, :class:`models.heads.loss_ota.AuxOTALoss`) trains both. Inference uses the lead head alone
    (the auxiliary convs are not run); the deploy model (tools/reparameterize.py) keeps only the lead head.
    """

    def __init__(self, nc: int = 80, anchors=3, ch: tuple[int, ...] = ()):
        ch = tuple(ch)
        if len(ch) % 2:
            raise ValueError(f"IAuxDetect takes 2 x nl inputs (lead levels, then auxiliary levels), got {len(ch)}")
        nl = len(ch) // 2
        if isinstance(anchors, (list, tuple)) and len(anchors) != nl:
            raise ValueError(f"IAuxDetect: anchors has {len(anchors)} rows but the row lists {len(ch)} inputs, "
                             f"i.e. {nl} lead + {nl} auxiliary levels; give one anchors row per lead level")
        super().__init__(nc, anchors, ch[:nl])
        self.m2 = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in ch[nl:])

    def forward(self, x: list[torch.Tensor]):
        if not self.training:
            return super().forward(x[: self.nl])
        raw = super().forward(x[: self.nl])
        for i in range(self.nl):
            p = self.m2[i](x[self.nl + i])
            b, _, ny, nx = p.shape
            raw.append(p.view(b, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous())
        return raw

    def setup_strides(self, strides: torch.Tensor) -> torch.Tensor:
        lead, aux = strides[: self.nl], strides[self.nl:]
        if not torch.equal(lead, aux):
            raise ValueError(f"IAuxDetect: auxiliary inputs must have the lead inputs' strides, got {lead.tolist()} "
                             f"and {aux.tolist()}")
        return super().setup_strides(lead)

    def init_biases(self) -> None:
        super().init_biases()
        for conv, s in zip(self.m2, self.stride.tolist()):
            b = conv.bias.data.view(self.na, self.no)
            b[:, 4] += math.log(8 / (640 / s) ** 2)
            b[:, 5:] += math.log(0.6 / (self.nc - 0.99999))

    def make_criterion(self, model: nn.Module):
        from models.heads.loss_ota import AuxOTALoss

        return AuxOTALoss(model)


def _anchor_head_args(args: list, row: RowContext) -> tuple[list, None]:
    """YAML ``[nc, anchors]`` -> ``(nc, anchors, ch)``; also checks the YAML's ``hyp:`` loss settings now, not at epoch 1."""
    try:
        loss_hyp(row.model)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    nc, anchors = (list(args) + [None, None])[:2]
    return [nc, anchors, row.c_from], None


LAYERS.add(AnchorDetect, kind="head", make_args=_anchor_head_args)
LAYERS.add(IDetect, kind="head", make_args=_anchor_head_args)
LAYERS.add(IAuxDetect, kind="head", make_args=_anchor_head_args)
