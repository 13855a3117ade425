"""AutoAnchor: check how well a head's anchors fit a dataset before training, and evolve better ones if they don't.

YOLOv5's procedure (``utils/autoanchor.py``), with our own implementation:

- Label sizes: every training box's width and height in pixels at the training image size (letterboxed,
  long side = imgsz), jittered by a random scale in [0.9, 1.1] per image for the check.
- Best possible recall (BPR): the share of labels with at least one anchor whose width and height
  ratios are all within ``anchor_t`` (the loss's matching rule; YOLOv5 default 4.0).
- At BPR < 0.98: k-means on the whitened sizes (labels under 2 px dropped), then 1000 generations of a
  genetic refinement that mutates all anchors (probability 0.9, sigma 0.1) and keeps a mutation when the
  fitness (mean best ratio over labels that pass the threshold) improves. The new anchors replace the
  old ones only if their BPR is higher.

Runs from :class:`models.engine.trainer.AttentionTrainer` before the first epoch (not on resume, where the
checkpoint's anchors are kept; the model YAML key ``autoanchor: false`` or ``train.py --noautoanchor``
turns it off). All randomness comes from a fixed-seed generator, so every DDP rank computes the same
anchors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from ultralytics.utils import LOGGER, RANK

PREFIX = "AutoAnchor: "
BPR_GOOD = 0.98


@dataclass
class AnchorCheck:
    bpr_before: float
    anchors_per_target: float
    bpr_after: float | None = None  # None: anchors were good, nothing evolved
    replaced: bool = False


def label_sizes(labels: list[dict], imgsz: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """(n, 2) label widths and heights in pixels at training size, from ultralytics dataset labels.

    Each label dict has ``shape`` (h, w) of the original image and ``bboxes`` (normalised xywh). With
    ``rng``, each image is rescaled by a random factor in [0.9, 1.1] (scale augmentation).
    """
    sizes = []
    for lb in labels:
        boxes = np.asarray(lb.get("bboxes", np.zeros((0, 4))), dtype=np.float64).reshape(-1, 4)
        if not len(boxes):
            continue
        h, w = lb["shape"]
        gain = imgsz / max(h, w) * (rng.uniform(0.9, 1.1) if rng is not None else 1.0)
        sizes.append(boxes[:, 2:4] * np.array([w, h]) * gain)
    return np.concatenate(sizes, 0) if sizes else np.zeros((0, 2))


def _best_ratios(anchors: np.ndarray, wh: np.ndarray) -> np.ndarray:
    """(n, k): for each label and anchor, the worse of the width and height ratios (1 = exact, 1/4 = 4x off)."""
    r = wh[:, None] / anchors[None]
    return np.minimum(r, 1 / r).min(2)


def anchor_fit(anchors: np.ndarray, wh: np.ndarray, thr: float = 4.0) -> tuple[float, float]:
    """(best possible recall, anchors per label above threshold) of ``anchors`` (k, 2) pixels on sizes ``wh``."""
    if not len(wh):
        return 1.0, 0.0
    x = _best_ratios(np.asarray(anchors, dtype=np.float64).reshape(-1, 2), wh)
    return float((x.max(1) > 1 / thr).mean()), float((x > 1 / thr).sum(1).mean())


def _fitness(anchors: np.ndarray, wh: np.ndarray, thr: float) -> float:
    best = _best_ratios(anchors, wh).max(1)
    return float((best * (best > 1 / thr)).mean())


def _kmeans(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means centres (k, d) of ``x`` (n, d) with scipy (as YOLOv5 does); missing centres (duplicates) drawn from x."""
    from scipy.cluster.vq import kmeans

    c, _ = kmeans(x, k, iter=30, rng=rng)
    if len(c) < k:  # scipy drops centres that lost all their points
        c = np.concatenate([c, x[rng.choice(len(x), k - len(c), replace=len(x) < k)]])
    return c


def evolve_anchors(wh: np.ndarray, n: int, imgsz: int, thr: float = 4.0, generations: int = 1000,
                   rng: np.random.Generator | None = None) -> np.ndarray:
    """k-means + genetic refinement of ``n`` anchors (pixels) for label sizes ``wh``; returns (n, 2) sorted by area."""
    rng = rng if rng is not None else np.random.default_rng(0)
    small = (wh < 3.0).any(1).sum()
    if small and RANK in {-1, 0}:
        LOGGER.warning(f"{PREFIX}{small} of {len(wh)} labels are smaller than 3 pixels")
    wh = wh[(wh >= 2.0).any(1)]
    if len(wh) >= n:
        sigma = wh.std(0)
        sigma[sigma == 0] = 1.0
        k = _kmeans(wh / sigma, n, rng) * sigma
    else:  # fewer labels than anchors: random start
        k = np.sort(rng.random(n * 2)).reshape(n, 2) * imgsz
    if not len(wh):
        return k[np.argsort(k.prod(1))]
    k = np.clip(k, 2.0, None)
    best = _fitness(k, wh, thr)
    for _ in range(generations):
        v = np.ones_like(k)
        while (v == 1).all():  # mutate until something changes
            v = ((rng.random(k.shape) < 0.9) * rng.random() * rng.standard_normal(k.shape) * 0.1 + 1).clip(0.3, 3.0)
        candidate = (k * v).clip(min=2.0)
        f = _fitness(candidate, wh, thr)
        if f > best:
            best, k = f, candidate
    return k[np.argsort(k.prod(1))]


def check_anchors(head, labels: list[dict], imgsz: int, thr: float = 4.0, seed: int = 0, force: bool = False) -> AnchorCheck:
    """Measure BPR of ``head``'s anchors on dataset labels; evolve and replace them in place when BPR < 0.98.

    ``force`` evolves regardless (anchors given as a count in the YAML). Logs both BPR figures.
    """
    rng = np.random.default_rng(seed)
    stride = head.stride.detach().cpu().double().view(-1, 1, 1)
    current = (head.anchors.detach().cpu().double() * stride).view(-1, 2).numpy()
    wh = label_sizes(labels, imgsz, rng)
    bpr, aat = anchor_fit(current, wh, thr)
    result = AnchorCheck(bpr_before=bpr, anchors_per_target=aat)
    msg = f"{PREFIX}{aat:.2f} anchors/target, {bpr:.3f} Best Possible Recall (BPR). "
    if bpr > BPR_GOOD and not force:
        _log(msg + "Current anchors are a good fit to the dataset.")
        return result
    _log(msg + ("Anchors are computed from the data (anchors given as a count)..." if force
                else "Anchors are a poor fit to the dataset, evolving new ones (k-means + genetic refinement)..."))
    new = evolve_anchors(label_sizes(labels, imgsz), len(current), imgsz, thr, rng=rng)
    new_bpr, _ = anchor_fit(new, wh, thr)
    result.bpr_after = new_bpr
    if new_bpr > bpr or force:
        table = torch.tensor(new, dtype=head.anchors.dtype, device=head.anchors.device).view_as(head.anchors)
        head.anchors.copy_(table / head.stride.to(table).view(-1, 1, 1))  # in place: EMA and criterion see it
        head.check_anchor_order()
        head.anchors_from_data = False
        result.replaced = True
        shown = ", ".join(f"{w:.0f},{h:.0f}" for w, h in new)
        _log(f"{PREFIX}new anchors: BPR {new_bpr:.3f} (was {bpr:.3f}). Anchors (pixels): {shown}")
    else:
        _log(f"{PREFIX}evolved anchors reach BPR {new_bpr:.3f}, not better than {bpr:.3f}: keeping the original anchors")
    return result


def _log(msg: str) -> None:
    if RANK in {-1, 0}:
        LOGGER.info(msg)


def autoanchor_before_training(trainer) -> None:
    """``on_pretrain_routine_end`` callback: check (and fix) the anchors of an anchor-based head before epoch 1."""
    from ultralytics.utils.torch_utils import unwrap_model

    from models.heads.anchor import AnchorHead
    from models.heads.loss import loss_hyp

    model = unwrap_model(trainer.model)
    head = model.model[-1]
    if not isinstance(head, AnchorHead) or trainer.args.resume:
        return
    if not model.yaml.get("autoanchor", True):
        if head.anchors_from_data and RANK in {-1, 0}:
            LOGGER.warning(f"{PREFIX}off, but the YAML gives only an anchor count: training with placeholder squares")
        else:
            _log(f"{PREFIX}off (autoanchor: false), keeping the YAML's anchors")
        return
    imgsz = trainer.args.imgsz
    imgsz = max(imgsz) if isinstance(imgsz, (list, tuple)) else imgsz
    thr = loss_hyp(model.yaml)["anchor_t"]
    with torch.no_grad():
        result = check_anchors(head, trainer.train_loader.dataset.labels, imgsz, thr, force=head.anchors_from_data)
        ema = getattr(trainer, "ema", None)
        if result.replaced and ema is not None:
            ema_head = ema.ema.model[-1]
            ema_head.anchors.copy_(head.anchors)
            ema_head.anchors_from_data = False
    trainer.autoanchor = result
