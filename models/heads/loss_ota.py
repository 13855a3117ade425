"""YOLOv7's OTA assignments for the anchor heads, as ultralytics criteria (same contract as :class:`AnchorLoss`).

YOLOv7 (Wang, Bochkovskiy, Liao, 2022, arXiv:2207.02696) trains with a SimOTA-style dynamic-k matching
(Ge et al., YOLOX, arXiv:2107.08430) on top of YOLOv5's candidate cells:

1. Candidates: YOLOv5's rule (:meth:`AnchorLoss.candidates`): anchors within ``anchor_t`` of the target's
   shape, at its cell and the neighbour cells whose shared edge is within ``reach`` of its centre.
2. Per image, for every (target, candidate) pair: IoU of the decoded prediction with the target (pixels);
   cost = class cost + 3 * (-log(IoU + 1e-8)), where the class cost is the BCE between the one-hot class and
   sqrt(sigmoid(class logit) * sigmoid(objectness logit)).
3. Each target takes its ``k`` cheapest candidates, k = max(1, int(sum of its ``topk`` largest IoUs)); a
   candidate chosen by several targets keeps only the cheapest one.
4. The loss terms are YOLOv5's (:meth:`AnchorLoss.level_terms`: 1 - CIoU, objectness BCE against the IoU,
   class BCE) on the matched cells, with the same gains and level balance.

:class:`OTALoss` is YOLOv7's ``ComputeLossOTA`` (3 candidates per level, ``topk`` 10), selected for the P5
heads by ``hyp: {loss_ota: 1}``. :class:`AuxOTALoss` is ``ComputeLossAuxOTA``, the lead-guided assignment
of the aux-head models: both assignments are computed from the *lead* head's predictions, the lead with
reach 0.5 and the auxiliary head with reach 1.0 (five candidate cells), ``topk`` 20 for both; the
auxiliary terms are added with weight 0.25.

Checked against YOLOv7's own losses (WongKinYiu/yolov7 utils/loss.py) on fixed seeded predictions and targets:
tests/test_loss_yolov7.py with the numbers in tests/fixtures/loss_yolov7.pt. Targets are scaled to pixels by
the image's width and height (YOLOv7 scales all four by the height, the same for its square training images).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from ultralytics.utils.metrics import box_iou
from ultralytics.utils.ops import xywh2xyxy

from models.heads.loss import AnchorLoss


class OTALoss(AnchorLoss):
    """YOLOv7's ``ComputeLossOTA`` on our anchor heads; ``__call__(preds, batch) -> (loss * bs, items)``."""

    topk = 10  # IoUs summed for a target's dynamic k
    reach = 0.5  # candidate neighbour cells (YOLOv5's three per level)

    def __call__(self, preds, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raw = self.raw_maps(preds)[: self.nl]
        targets = self.targets_of(batch, raw[0].device)
        assigned = self.ota_assign(raw, targets, self.image_size(batch, raw), self.reach, self.topk)
        return self.total(*self.level_terms(raw, assigned), raw[0].shape[0])

    def image_size(self, batch: dict, raw: list[torch.Tensor]) -> tuple[int, int]:
        """(height, width) of the input images in pixels: the batch's images, else the first level times its stride."""
        img = batch.get("img")
        if isinstance(img, torch.Tensor) and img.dim() == 4:
            return int(img.shape[2]), int(img.shape[3])
        s = float(self.head.stride[0])
        return round(raw[0].shape[2] * s), round(raw[0].shape[3] * s)

    @torch.no_grad()
    def _match(self, cost: torch.Tensor, iou: torch.Tensor, topk: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Dynamic-k matching of one image: (mask of matched candidates, index of each one's target)."""
        ks = torch.topk(iou, min(topk, iou.shape[1]), dim=1).values.sum(1).int().clamp(min=1)
        chosen = torch.zeros_like(cost)
        for t in range(cost.shape[0]):
            chosen[t, torch.topk(cost[t], k=int(ks[t]), largest=False).indices] = 1.0
        shared = chosen.sum(0) > 1
        if shared.any():  # a candidate chosen by several targets keeps the cheapest
            cheapest = cost[:, shared].argmin(0)
            chosen[:, shared] = 0.0
            chosen[cheapest, shared] = 1.0
        matched = chosen.sum(0) > 0
        return matched, chosen[:, matched].argmax(0)

    def ota_assign(self, raw: list[torch.Tensor], targets: torch.Tensor, image_hw: tuple[int, int], reach: float,
                   topk: int) -> list[tuple]:
        """Per level, what :meth:`AnchorLoss.assign` returns, for the targets OTA matches to cells of ``raw``."""
        device = targets.device
        nl = len(raw)
        cands = [self.candidates(i, p.shape, targets, reach) for i, p in enumerate(raw)]
        h, w = image_hw
        to_pixels = torch.tensor([w, h, w, h], device=device, dtype=torch.float32)
        kept: list[list[tuple]] = [[] for _ in range(nl)]  # per level: (image, anchor, gy, gx, target row, anchor wh)
        for b in range(raw[0].shape[0]):
            rows = (targets[:, 0] == b).nonzero(as_tuple=True)[0]
            if not rows.numel():
                continue
            parts, boxes, logits = [], [], []
            for i, (img, a, gj, gi, trow, anc) in enumerate(cands):
                sel = img == b
                img_b, a_b, gj_b, gi_b, anc_b = img[sel], a[sel], gj[sel], gi[sel], anc[sel]
                parts.append((torch.full_like(a_b, i), img_b, a_b, gj_b, gi_b, anc_b))
                p = raw[i][img_b, a_b, gj_b, gi_b]
                stride = self.head.stride[i].to(device)
                xy = (p[:, :2].sigmoid() * 2.0 - 0.5 + torch.stack((gi_b, gj_b), 1)) * stride
                wh = (p[:, 2:4].sigmoid() * 2) ** 2 * anc_b * stride
                boxes.append(xywh2xyxy(torch.cat((xy, wh), 1)))
                logits.append(p[:, 4:])
            boxes = torch.cat(boxes)
            if not boxes.shape[0]:
                continue
            logits = torch.cat(logits).float()
            gt = targets[rows]
            iou = box_iou(xywh2xyxy(gt[:, 2:6] * to_pixels), boxes)
            prob = (logits[:, 1:].sigmoid() * logits[:, :1].sigmoid()).sqrt()  # (candidates, nc)
            onehot = F.one_hot(gt[:, 1].long(), self.nc).float()  # (targets, nc)
            n_t, n_c = len(rows), boxes.shape[0]
            cls_cost = F.binary_cross_entropy_with_logits(
                torch.log(prob / (1 - prob)).unsqueeze(0).expand(n_t, n_c, -1),
                onehot.unsqueeze(1).expand(n_t, n_c, -1), reduction="none").sum(-1)
            cost = cls_cost + 3.0 * -torch.log(iou + 1e-8)
            matched, which = self._match(cost, iou, topk)
            level, img_m, a_m, gj_m, gi_m, anc_m = (torch.cat(x)[matched] for x in zip(*parts))
            trow_m = rows[which]
            for i in range(nl):
                on = level == i
                kept[i].append((img_m[on], a_m[on], gj_m[on], gi_m[on], trow_m[on], anc_m[on]))
        out = []
        for i, p in enumerate(raw):
            if kept[i]:
                img, a, gj, gi, trow, anc = (torch.cat(x) for x in zip(*kept[i]))
            else:
                empty = torch.zeros(0, dtype=torch.long, device=device)
                img = a = gj = gi = trow = empty
                anc = torch.zeros(0, 2, device=device)
            out.append((img, a, gj, gi, self.box_targets(targets, trow, gj, gi, p.shape), targets[trow, 1].long(), anc))
        return out


class AuxOTALoss(OTALoss):
    """YOLOv7's ``ComputeLossAuxOTA`` for ``IAuxDetect``: lead-guided OTA for the lead and the auxiliary head.

    Training predictions are the ``nl`` lead maps followed by the ``nl`` auxiliary maps. Eval-mode predictions
    (the validator) carry the lead maps only; the loss is then the lead part alone.
    """

    topk = 20
    aux_reach = 1.0  # five candidate cells per level for the auxiliary head
    aux_weight = 0.25

    def __call__(self, preds, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raw = self.raw_maps(preds)
        lead, aux = raw[: self.nl], raw[self.nl: 2 * self.nl]
        targets = self.targets_of(batch, lead[0].device)
        size = self.image_size(batch, lead)
        lbox, lobj, lcls = self.level_terms(lead, self.ota_assign(lead, targets, size, self.reach, self.topk))
        if aux:  # both assignments from the lead predictions ("lead guided")
            assigned = self.ota_assign(lead, targets, size, self.aux_reach, self.topk)
            abox, aobj, acls = self.level_terms(aux, assigned, weight=self.aux_weight)
            lbox, lobj, lcls = lbox + abox, lobj + aobj, lcls + acls
        return self.total(lbox, lobj, lcls, lead[0].shape[0])
