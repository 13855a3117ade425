"""YOLOv5's loss for the anchor-based heads (YOLOv5 ``Detect``, YOLOv7 ``IDetect``), as an ultralytics criterion.

The ultralytics trainer calls ``model.loss(batch)``, which builds this criterion through the head's
``make_criterion``; it returns ``(total * batch_size, {"box_loss", "obj_loss", "cls_loss"})`` like every
ultralytics criterion, so logging, ``results.csv`` and validation losses work unchanged.

What it computes (YOLOv5 v6/v7, ``utils/loss.py``):

- Assignment: a target goes to every anchor whose width and height ratios to it are all within
  ``anchor_t`` (4.0), at its own grid cell and the two neighbouring cells nearest to its centre,
  on every level.
- Box: 1 - CIoU between the decoded prediction and the target.
- Objectness: BCE against the (detached, clamped) CIoU at assigned cells and 0 elsewhere, weighted
  per level by 4.0 / 1.0 / 0.4 (P3 / P4 / P5).
- Classes: BCE with label smoothing targets (only with more than one class).
- Gains from YOLOv5's ``hyp.scratch-low.yaml`` (box 0.05, obj 1.0, cls 0.5, ...), scaled as YOLOv5's
  train.py scales them: box by 3 / nl, cls by nc / 80 * 3 / nl, obj by (imgsz / 640)^2 * 3 / nl.

The gains come from the model YAML's ``hyp:`` mapping (train.py puts the YOLOv5 keys of ``--hyp`` there),
so they travel with the model into checkpoints, resumed runs and DDP workers. ``hyp: {loss_ota: 1}`` (YOLOv7's
hyp key) switches an anchor head to YOLOv7's OTA assignment (:mod:`models.heads.loss_ota`); YOLOv7's aux-head models
(``IAuxDetect``) always train with its lead-guided assignment.

Checked against YOLOv5's own ``ComputeLoss`` (ultralytics/yolov5 v7.0) on fixed predictions and targets:
tests/test_loss_yolov5.py, data in tests/fixtures/loss_yolov5.pt.
"""

from __future__ import annotations

import torch
from torch import nn
from ultralytics.utils.metrics import bbox_iou

# YOLOv5 data/hyps/hyp.scratch-low.yaml: the loss part
HYP_SCRATCH_LOW = {
    "box": 0.05,  # box loss gain
    "cls": 0.5,  # class loss gain
    "cls_pw": 1.0,  # class BCE positive weight
    "obj": 1.0,  # objectness loss gain (scales with image size)
    "obj_pw": 1.0,  # objectness BCE positive weight
    "iou_t": 0.20,  # IoU training threshold (read by nothing in YOLOv5's loss; kept for its hyp files)
    "anchor_t": 4.0,  # anchor-multiple threshold of the assignment and of AutoAnchor
    "fl_gamma": 0.0,  # focal loss gamma (0: plain BCE)
    "label_smoothing": 0.0,  # class label smoothing epsilon
}
# YOLOv7's hyp files: loss_ota 1 = its OTA assignment (ComputeLossOTA), 0 = YOLOv5's (the default here)
HYP_YOLOV7 = {"loss_ota": 0.0}
LEVEL_BALANCE = {3: (4.0, 1.0, 0.4)}  # objectness weight per level, P3..P5
LEVEL_BALANCE_DEFAULT = (4.0, 1.0, 0.25, 0.06, 0.02)
NEIGHBOUR_OFFSETS = ((0.0, 0.0), (0.5, 0.0), (0.0, 0.5), (-0.5, 0.0), (0.0, -0.5))  # self, left, up, right, down


def loss_hyp(model_yaml: dict) -> dict:
    """The YOLOv5 loss settings of a model: hyp.scratch-low values, overridden by the YAML's ``hyp:`` mapping."""
    source = model_yaml.get("yaml_file", "<dict>")
    hyp = model_yaml.get("hyp") or {}
    if not isinstance(hyp, dict):
        raise ValueError(f"{source}: hyp must be a mapping of YOLOv5 loss settings, got {hyp!r}")
    known = {**HYP_SCRATCH_LOW, **HYP_YOLOV7}
    unknown = sorted(set(hyp) - set(known))
    if unknown:
        raise ValueError(f"{source}: hyp: unknown key(s) {unknown}; YOLOv5/YOLOv7 loss settings are {sorted(known)}")
    if hyp.get("loss_ota", 0) not in (0, 1):
        raise ValueError(f"{source}: hyp: loss_ota must be 0 (YOLOv5 assignment) or 1 (YOLOv7 OTA), got {hyp['loss_ota']!r}")
    out = dict(known)
    for k, v in hyp.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise ValueError(f"{source}: hyp: {k} must be a non-negative number, got {v!r}")
        out[k] = float(v)
    return out


class FocalBCE(nn.Module):
    """BCE-with-logits reweighted by alpha and (1 - p_t)^gamma (Lin et al., arXiv:1708.02002), YOLOv5's FocalLoss."""

    def __init__(self, bce: nn.BCEWithLogitsLoss, gamma: float, alpha: float = 0.25):
        super().__init__()
        self.bce, self.gamma, self.alpha = bce, gamma, alpha
        self.bce.reduction = "none"

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = self.bce(logits, target)
        p = logits.sigmoid()
        p_t = target * p + (1 - target) * (1 - p)
        alpha = target * self.alpha + (1 - target) * (1 - self.alpha)
        return (loss * alpha * (1 - p_t) ** self.gamma).mean()


class AnchorLoss:
    """YOLOv5's ComputeLoss on our anchor heads; ``__call__(preds, batch) -> (loss * bs, items)``."""

    def __init__(self, model: nn.Module):
        head = model.model[-1]
        h = loss_hyp(model.yaml)
        imgsz = model.args.imgsz
        imgsz = max(imgsz) if isinstance(imgsz, (list, tuple)) else imgsz
        device = next(model.parameters()).device
        self.head, self.nl, self.na, self.nc = head, head.nl, head.na, head.nc
        self.box_gain = h["box"] * 3 / self.nl
        self.cls_gain = h["cls"] * self.nc / 80 * 3 / self.nl
        self.obj_gain = h["obj"] * (imgsz / 640) ** 2 * 3 / self.nl
        self.anchor_t = h["anchor_t"]
        self.cls_pos, self.cls_neg = 1.0 - 0.5 * h["label_smoothing"], 0.5 * h["label_smoothing"]
        bce_cls = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([h["cls_pw"]], device=device))
        bce_obj = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([h["obj_pw"]], device=device))
        if h["fl_gamma"] > 0:
            bce_cls, bce_obj = FocalBCE(bce_cls, h["fl_gamma"]), FocalBCE(bce_obj, h["fl_gamma"])
        self.bce_cls, self.bce_obj = bce_cls, bce_obj
        self.balance = LEVEL_BALANCE.get(self.nl, LEVEL_BALANCE_DEFAULT)
        self.hyp = h

    @staticmethod
    def raw_maps(preds) -> list[torch.Tensor]:
        """Per-level raw maps from a training-mode list or an eval-mode ``(decoded, maps)`` tuple."""
        return preds[1] if isinstance(preds, tuple) else preds

    @staticmethod
    def targets_of(batch: dict, device) -> torch.Tensor:
        """(n, 6) targets: image index, class, x, y, w, h (normalised), from an ultralytics batch."""
        targets = torch.cat((batch["batch_idx"].view(-1, 1), batch["cls"].view(-1, 1), batch["bboxes"].view(-1, 4)), 1)
        return targets.to(device=device, dtype=torch.float32)

    def __call__(self, preds, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raw = self.raw_maps(preds)
        targets = self.targets_of(batch, raw[0].device)
        lbox, lobj, lcls = self.level_terms(raw, [self.assign(i, p.shape, targets) for i, p in enumerate(raw)])
        return self.total(lbox, lobj, lcls, raw[0].shape[0])

    def total(self, lbox, lobj, lcls, bs: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Apply the gains; ``(sum * batch size, items)`` as ultralytics' trainer and validator expect."""
        lbox, lobj, lcls = lbox * self.box_gain, lobj * self.obj_gain, lcls * self.cls_gain
        items = {"box_loss": lbox.detach(), "obj_loss": lobj.detach(), "cls_loss": lcls.detach()}
        return (lbox + lobj + lcls) * bs, items

    def level_terms(self, raw: list[torch.Tensor], assigned: list[tuple], weight: float = 1.0):
        """Box, objectness and class losses (before gains) of per-level maps and their assigned targets.

        ``assigned[i]`` is what :meth:`assign` returns for level ``i``; ``weight`` scales all three terms (YOLOv7's
        auxiliary head counts 0.25).
        """
        device = raw[0].device
        lbox, lobj, lcls = (torch.zeros((), device=device) for _ in range(3))
        for i, (p, (img, a, gj, gi, tbox, tcls, anchors)) in enumerate(zip(raw, assigned)):
            tobj = torch.zeros(p.shape[:4], device=device)
            if img.numel():
                ps = p[img, a, gj, gi].float()
                pxy = ps[:, :2].sigmoid() * 2 - 0.5
                pwh = (ps[:, 2:4].sigmoid() * 2) ** 2 * anchors
                iou = bbox_iou(torch.cat((pxy, pwh), 1), tbox, xywh=True, CIoU=True).squeeze(-1)
                lbox = lbox + (1.0 - iou).mean() * weight
                tobj[img, a, gj, gi] = iou.detach().clamp(0)
                if self.nc > 1:
                    t = torch.full_like(ps[:, 5:], self.cls_neg)
                    t[torch.arange(len(tcls), device=device), tcls] = self.cls_pos
                    lcls = lcls + self.bce_cls(ps[:, 5:], t) * weight
            lobj = lobj + self.bce_obj(p[..., 4].float(), tobj) * self.balance[i] * weight
        return lbox, lobj, lcls

    def candidates(self, i: int, shape: torch.Size, targets: torch.Tensor, reach: float = 0.5):
        """YOLOv5's candidate cells of level ``i``: (image, anchor, gy, gx, target row, anchor size in grid units).

        A target goes to every anchor whose width and height ratios to it are within ``anchor_t``, at its own cell
        and at each neighbour cell whose shared edge is nearer than ``reach`` cells to its centre (0.5: the two
        nearest, YOLOv5; 1.0: all four, YOLOv7's auxiliary assignment). Cells are clamped to the grid.
        ``targets`` is (n, 6): image index, class, x, y, w, h normalised to the image.
        """
        ny, nx = shape[2], shape[3]
        device = targets.device
        anchors = self.head.anchors[i].to(device=device, dtype=torch.float32)  # (na, 2), grid units
        grid = torch.tensor([nx, ny, nx, ny], device=device, dtype=torch.float32)
        xywh = targets[:, 2:6] * grid
        ratio = xywh[None, :, 2:4] / anchors[:, None]  # (na, n, 2)
        a, j = (torch.max(ratio, 1 / ratio).amax(2) < self.anchor_t).nonzero(as_tuple=True)
        gxy = xywh[j, :2]
        from_far = grid[:2] - gxy  # distance to the right/bottom edge
        near_low = (gxy % 1 < reach) & (gxy > 1)  # centre near the left/top edge of its cell: use that neighbour too
        near_high = (from_far % 1 < reach) & (from_far > 1)
        use = torch.cat((torch.ones_like(near_low[:, :1]), near_low, near_high), 1).T  # (5, m)
        k, m = use.nonzero(as_tuple=True)
        offsets = torch.tensor(NEIGHBOUR_OFFSETS, device=device)[k] * (2 * reach)
        cell = (gxy[m] - offsets).long()
        gi, gj = cell[:, 0].clamp(0, nx - 1), cell[:, 1].clamp(0, ny - 1)
        a, j = a[m], j[m]
        return targets[j, 0].long(), a, gj, gi, j, anchors[a]

    @staticmethod
    def box_targets(targets: torch.Tensor, rows: torch.Tensor, gj: torch.Tensor, gi: torch.Tensor,
                    shape: torch.Size) -> torch.Tensor:
        """Target boxes in grid units of a level, centres relative to their (assigned, clamped) cell."""
        ny, nx = shape[2], shape[3]
        xywh = targets[rows, 2:6] * torch.tensor([nx, ny, nx, ny], device=targets.device, dtype=torch.float32)
        return torch.cat((xywh[:, :2] - torch.stack((gi, gj), 1), xywh[:, 2:]), 1)

    def assign(self, i: int, shape: torch.Size, targets: torch.Tensor):
        """Targets of level ``i``: (image, anchor, gy, gx) indices, box (xy in its cell, wh; grid units), class, anchor.

        ``targets`` is (n, 6): image index, class, x, y, w, h normalised to the image.
        """
        img, a, gj, gi, rows, anchors = self.candidates(i, shape, targets)
        return img, a, gj, gi, self.box_targets(targets, rows, gj, gi, shape), targets[rows, 1].long(), anchors
