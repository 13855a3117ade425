"""Built-in synthetic detection dataset ("shapes"): made on first use, deterministic from a seed.

Five classes of filled shapes (circle, rectangle, triangle, star, cross) with random size, aspect
ratio, rotation and colour, 1-6 per image, drawn on textured backgrounds (colour gradient, blotches,
lines, noise). Shapes may overlap; an object more than half hidden by later shapes is not drawn, so
every drawn object is at least half visible and has a label. Labels are YOLO format (class cx cy w h,
normalised) of each shape's full extent.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np

CLASSES = ["circle", "rectangle", "triangle", "star", "cross"]
VERSION = 1  # bump when the generator's output changes


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0, 1, size, dtype=np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(angle) * t[None, :] + np.sin(angle) * t[:, None]
    ramp = (ramp - ramp.min()) / (np.ptp(ramp) + 1e-6)
    img = (c0[None, None] * (1 - ramp[..., None]) + c1[None, None] * ramp[..., None]).astype(np.float32)
    for _ in range(rng.integers(3, 9)):  # soft blotches
        centre = tuple(int(v) for v in rng.integers(0, size, 2))
        axes = tuple(int(v) for v in rng.integers(size // 16, size // 3, 2))
        cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360, rng.integers(0, 256, 3).tolist(), -1)
    img = cv2.GaussianBlur(img, (0, 0), size / 40)
    for _ in range(rng.integers(2, 8)):  # thin clutter lines
        p1, p2 = rng.integers(0, size, 2), rng.integers(0, size, 2)
        cv2.line(img, tuple(int(v) for v in p1), tuple(int(v) for v in p2), rng.integers(0, 256, 3).tolist(), int(rng.integers(1, 3)))
    img += rng.normal(0, rng.uniform(3, 12), img.shape).astype(np.float32)
    return img


def _polygon(cls: int, cx: float, cy: float, w: float, h: float, rot: float) -> np.ndarray | None:
    if cls == 1:  # rectangle
        pts = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
    elif cls == 2:  # triangle
        pts = [(0, -1), (1, 1), (-1, 1)]
    elif cls == 3:  # five-pointed star
        pts = [((1 if k % 2 == 0 else 0.45) * math.sin(k * math.pi / 5), -(1 if k % 2 == 0 else 0.45) * math.cos(k * math.pi / 5)) for k in range(10)]
    elif cls == 4:  # cross
        a = 0.33
        pts = [(-a, -1), (a, -1), (a, -a), (1, -a), (1, a), (a, a), (a, 1), (-a, 1), (-a, a), (-1, a), (-1, -a), (-a, -a)]
    else:
        return None
    p = np.array(pts, np.float32) * np.array([w / 2, h / 2], np.float32)
    c, s = math.cos(rot), math.sin(rot)
    p = p @ np.array([[c, s], [-s, c]], np.float32)
    return (p + np.array([cx, cy], np.float32)).round().astype(np.int32)


def _mask(cls: int, cx, cy, w, h, rot, size: int) -> np.ndarray:
    m = np.zeros((size, size), np.uint8)
    if cls == 0:
        cv2.ellipse(m, (int(cx), int(cy)), (max(1, int(w / 2)), max(1, int(h / 2))), math.degrees(rot), 0, 360, 1, -1)
    else:
        cv2.fillPoly(m, [_polygon(cls, cx, cy, w, h, rot)], 1)
    return m


def make_image(seed: int, size: int = 320) -> tuple[np.ndarray, list[tuple[int, float, float, float, float]]]:
    """One image (BGR uint8) and its labels [(cls, cx, cy, w, h) normalised], fully determined by ``seed``."""
    rng = np.random.default_rng(seed)
    img = _background(rng, size)
    objects = []
    for _ in range(rng.integers(1, 7)):
        cls = int(rng.integers(len(CLASSES)))
        scale = size * rng.uniform(0.08, 0.4)
        aspect = rng.uniform(0.5, 2.0) if cls in (1, 0) else rng.uniform(0.75, 1.33)
        w, h = scale * math.sqrt(aspect), scale / math.sqrt(aspect)
        rot = rng.uniform(0, 2 * math.pi) if cls in (2, 3) else (rng.choice([0.0, math.pi / 2]) if cls in (0, 1) else rng.uniform(-0.3, 0.3))
        cx, cy = rng.uniform(0.1, 0.9, 2) * size
        colour = rng.integers(0, 256, 3)
        objects.append((cls, cx, cy, w, h, rot, colour, _mask(cls, cx, cy, w, h, rot, size)))
    # drop objects more than half hidden by later ones, until stable
    keep = list(range(len(objects)))
    changed = True
    while changed:
        changed = False
        for k in list(keep):
            area = objects[k][7].sum()
            above = np.zeros_like(objects[k][7])
            for j in keep:
                if j > k:
                    above |= objects[j][7]
            if area == 0 or (objects[k][7] & ~above.astype(bool)).sum() < 0.5 * area:
                keep.remove(k)
                changed = True
    labels = []
    for k in keep:
        cls, cx, cy, w, h, rot, colour, mask = objects[k]
        shade = rng.uniform(0.75, 1.0)
        img[mask.astype(bool)] = colour * shade
        ys, xs = np.nonzero(mask)
        x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
        labels.append((cls, (x0 + x1) / 2 / size, (y0 + y1) / 2 / size, (x1 - x0) / size, (y1 - y0) / size))
    img += rng.normal(0, 4, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8), labels


def generate(root: str | Path, n_train: int = 400, n_val: int = 100, size: int = 320, seed: int = 0, verbose: bool = True) -> Path:
    """Write the dataset under ``root`` (images/{train,val}, labels/{train,val}); skip if already complete."""
    root = Path(root)
    stamp = root / "generated.json"
    meta = {"version": VERSION, "n_train": n_train, "n_val": n_val, "size": size, "seed": seed, "classes": CLASSES}
    if stamp.exists() and json.loads(stamp.read_text()) == meta:
        return root
    if verbose:
        print(f"Generating built-in dataset in {root} ({n_train} train + {n_val} val images, seed {seed}) ...")
    for split, n, offset in (("train", n_train, 0), ("val", n_val, 1_000_000)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for k in range(n):
            img, labels = make_image(seed * 10_000_019 + offset + k, size)
            cv2.imwrite(str(root / "images" / split / f"{k:06d}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
            (root / "labels" / split / f"{k:06d}.txt").write_text(
                "".join(f"{c} {x:.6f} {y:.6f} {w:.6f} {h:.6f}\n" for c, x, y, w, h in labels)
            )
    for cache in root.glob("labels/*.cache"):
        cache.unlink()
    stamp.write_text(json.dumps(meta))
    return root
