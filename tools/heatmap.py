"""Heatmaps of a trained detector: Grad-CAM of its detections and the maps of every attention layer.

    python tools/heatmap.py --weights runs/train/exp/weights/best.pt --source data/images --img 320
    python tools/heatmap.py --weights best.pt --source clip.mp4 --every 30     # frame 0, 30, 60, ...
    python detect.py --weights best.pt --source data/images --heatmap          # the same, next to detect's output

Per image (or video frame) it saves to ``<save_dir>/heatmaps/``:

- ``<stem>_gradcam.jpg``: Grad-CAM (the ``grad-cam`` package, ``pytorch_grad_cam.GradCAM``) on the feature maps
  that feed the detection head (P3, P4, P5), for the sum of the class scores of the detections kept by NMS; with
  no detection above the threshold, for the single highest-scoring prediction (the caption says which). Boxes drawn.
- ``<stem>_attn_L<i>_<Module>.png`` for every attention layer ``i`` (``L<i>.<path>`` for one nested in a block
  such as ``C3Att``): its spatial map over the image and its per-channel weights as a bar chart. The maps come
  from the module protocol, ``module.attention_maps(x)`` (``models/registry/protocol.py``): its gates (SE, CBAM, CoordAtt,
  ...), or the attention each position receives (NonLocal, DANet, CrissCross, BoTMHSA), or GCBlock's pooling
  weights. A map the module does not give is derived from the layer's input and output, captured with forward
  hooks: spatial = ||out||^2 / ||in||^2 over channels per pixel, channel = mean|out| / mean|in| over pixels. Each
  figure's title says which.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import tools.common as common
from models.engine import run_folder  # noqa: E402  (offline environment first)

import torch  # noqa: E402

EPS = 1e-8


# --------------------------------------------------------------------------------------------- model side


def load_model(weights: str, device: str = "cpu", trust: bool = False):
    """Our checkpoint as an fp32 eval model whose parameters take gradients (Grad-CAM needs them); a clear exit for a
    missing, unreadable or refused file."""
    from models.weights.checkpoint import CheckpointError
    from models.weights.checkpoint import load_model as load_checkpoint_model

    try:
        model = load_checkpoint_model(common.check_weights(weights), device=device, trust=trust)
    except CheckpointError as e:
        raise SystemExit(f"error: --weights {e}") from None
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def attention_layers(model) -> list[tuple[str, object]]:
    """(label, module) of every attention module (:class:`models.registry.protocol.AttentionModule`) in the model.

    A top-level layer ``i`` is labelled ``L<i>``; a module inside one (``C3Att``'s bottlenecks, ``ELANAtt``'s
    stages, a ``ResidualBlend`` wrapper) ``L<i>.<path>``, e.g. ``L2.m.0.att``. Modules inside a found attention
    module are not listed again.
    """
    from models.registry.protocol import attention_modules

    found = []
    for k, layer in enumerate(model.model):
        top = f"L{getattr(layer, 'i', k)}"
        found += [(f"{top}.{name}" if name else top, m) for name, m in attention_modules(layer)]
    return found


class _Scores(torch.nn.Module):
    """The detector's eval output (B, 4 + nc, N) alone, as Grad-CAM expects a single tensor."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        out = self.model(x)
        return out[0] if isinstance(out, (list, tuple)) else out


class DetectionScore:
    """Grad-CAM target: the sum of the class scores of the chosen predictions (anchor index, class)."""

    def __init__(self, anchors: list[int], classes: list[int]):
        self.anchors, self.classes = anchors, classes

    def __call__(self, output):  # output: (4 + nc, N) of one image
        return sum(output[4 + c, a] for a, c in zip(self.anchors, self.classes))


def attention_maps(module, x, y):
    """(spatial (H, W), how, channel (C,), how) of one attention layer for image 0 of its input ``x`` and output ``y``.

    The module's own maps (``module.attention_maps(x)``, the protocol) where it gives them; the others derived
    from ``x`` and ``y``.
    """
    with torch.no_grad():
        own = module.attention_maps(x)
        x0, y0 = x.float()[0], y.float()[0]
        spatial, channel = own.get("spatial"), own.get("channel")
        if spatial is None:
            spatial = y0.pow(2).sum(0) / (x0.pow(2).sum(0) + EPS)
            s_how = "derived: ||out||² / ||in||² per pixel"
        else:
            spatial, s_how = spatial.detach().float()[0], own.get("spatial_how", "the module's spatial map")
        if channel is None:
            channel = y0.abs().mean((1, 2)) / (x0.abs().mean((1, 2)) + EPS)
            c_how = "derived: mean|out| / mean|in| per channel"
        else:
            channel, c_how = channel.detach().float()[0], own.get("channel_how", "the module's channel weights")
    return spatial.cpu().numpy(), s_how, channel.cpu().numpy(), c_how


# ------------------------------------------------------------------------------------------- image side


def letterbox(frame, imgsz: int):
    """(input (1, 3, s, s) in [0, 1] RGB, (top, left, new_h, new_w, s): where the image lies in the padded square)."""
    import numpy as np
    from ultralytics.data.augment import LetterBox

    h, w = frame.shape[:2]
    padded = LetterBox((imgsz, imgsz), auto=False)(image=frame)
    r = min(imgsz / h, imgsz / w)
    nh, nw = int(round(h * r)), int(round(w * r))
    top, left = int(round((imgsz - nh) / 2 - 0.1)), int(round((imgsz - nw) / 2 - 0.1))
    x = torch.from_numpy(np.ascontiguousarray(padded[..., ::-1].transpose(2, 0, 1))).float()[None] / 255.0
    return x, (top, left, nh, nw, imgsz)


def to_frame(m, box, shape):
    """A map over the padded input (any resolution) cropped to the image and resized to the frame's (h, w)."""
    import cv2
    import numpy as np

    top, left, nh, nw, side = box
    m = np.asarray(m, dtype=np.float32)
    scale = m.shape[0] / side  # the map may be the input's size or a feature map's
    t, l = int(top * scale), int(left * scale)
    hh, ww = max(1, int(round(nh * scale))), max(1, int(round(nw * scale)))
    crop = m[t:t + hh, l:l + ww]
    return cv2.resize(crop, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def normalise(m):
    import numpy as np

    m = np.asarray(m, dtype=np.float32)
    lo, hi = float(m.min()), float(m.max())
    return (m - lo) / (hi - lo) if hi - lo > 1e-12 else np.zeros_like(m)


def iter_frames(source: str, every: int):
    """(stem, BGR frame) for an image, a folder, a glob, or every ``every``-th frame of a video."""
    import glob

    import cv2
    from ultralytics.data.utils import IMG_FORMATS, VID_FORMATS

    p = Path(source)
    if source.isdigit() or "://" in source:
        raise SystemExit(f"error: --source {source}: heatmaps take files (images, videos, folders, globs), not streams")
    files = sorted(p.iterdir()) if p.is_dir() else [p] if p.exists() else sorted(Path(f) for f in glob.glob(source))
    if not files:
        raise SystemExit(f"error: --source {source}: no such file or folder")
    for f in files:
        ext = f.suffix[1:].lower()
        if ext in IMG_FORMATS:
            img = cv2.imread(str(f))
            if img is None:
                raise SystemExit(f"error: {f}: not a readable image")
            yield f.stem, img
        elif ext in VID_FORMATS:
            cap = cv2.VideoCapture(str(f))
            k = 0
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                if k % max(every, 1) == 0:
                    yield f"{f.stem}_f{k:06d}", frame
                k += 1
            cap.release()


# ------------------------------------------------------------------------------------------------ output


def gradcam_image(model, x, frame, box, conf: float, iou: float, names: dict):
    """(overlay BGR image, cam over the frame, caption): Grad-CAM of the detections on the head's input maps."""
    import cv2
    import numpy as np
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.image import show_cam_on_image
    from ultralytics.utils.nms import non_max_suppression
    from ultralytics.utils.ops import scale_boxes

    wrapped = _Scores(model)
    with torch.no_grad():
        pred = wrapped(x)
    dets, keep = non_max_suppression(pred, conf, iou, max_det=100, return_idxs=True)
    dets, keep = dets[0], keep[0]
    if len(dets):
        anchors, classes = keep.tolist(), dets[:, 5].long().tolist()
        caption = f"Grad-CAM of {len(dets)} detection(s), conf >= {conf:g}"
    else:
        scores = pred[0, 4:]
        best = int(scores.max(0).values.argmax())
        anchors, classes = [best], [int(scores[:, best].argmax())]
        caption = (f"no detection >= {conf:g}: Grad-CAM of the top prediction "
                   f"({names.get(classes[0], classes[0])} {float(scores[classes[0], best]):.3f})")
    head = model.model[-1]
    layers = [model.model[j] for j in (head.f if isinstance(head.f, list) else [head.f])]
    with GradCAM(model=wrapped, target_layers=layers) as cam_fn:
        cam = cam_fn(input_tensor=x.requires_grad_(False), targets=[DetectionScore(anchors, classes)])[0]
    cam_frame = normalise(to_frame(cam, box, frame.shape))
    rgb = frame[..., ::-1].astype(np.float32) / 255.0
    overlay = cv2.cvtColor(show_cam_on_image(rgb, cam_frame, use_rgb=True), cv2.COLOR_RGB2BGR)
    if len(dets):
        boxes = scale_boxes(x.shape[2:], dets[:, :4].clone(), frame.shape[:2]).round().int().tolist()
        for (x1, y1, x2, y2), c, s in zip(boxes, classes, dets[:, 4].tolist()):
            cv2.rectangle(overlay, (x1, y1), (x2, y2), (255, 255, 255), 1)
            cv2.putText(overlay, f"{names.get(c, c)} {s:.2f}", (x1, max(10, y1 - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                        (255, 255, 255), 1, cv2.LINE_AA)
    return overlay, cam_frame, caption


def attention_figure(path: Path, frame, spatial, s_how: str, channel, c_how: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=100, gridspec_kw={"width_ratios": [1, 1.4]})
    a1.imshow(frame[..., ::-1])
    im = a1.imshow(spatial, cmap="jet", alpha=0.5)
    fig.colorbar(im, ax=a1, fraction=0.046)
    a1.set_title(f"spatial: {s_how}", fontsize=8)
    a1.axis("off")
    a2.bar(np.arange(len(channel)), channel, width=1.0, color="C0")
    a2.set_xlabel("channel")
    a2.set_title(f"channel weights: {c_how}", fontsize=8)
    a2.set_xlim(-0.5, len(channel) - 0.5)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def torch_device(device: str = "") -> str:
    device = device or ("cuda:0" if torch.cuda.is_available() else "cpu")
    return f"cuda:{device}" if device.isdigit() else device


def save_heatmaps(weights: str, source: str, save_dir: str | Path, imgsz: int = 640, conf: float = 0.25,
                  iou: float = 0.45, device: str = "", every: int = 30, trust: bool = False, model=None) -> list[Path]:
    """Write the Grad-CAM image and the attention figures of every image/frame of ``source``; return the paths.
    ``model``: the one :func:`load_model` read from ``weights`` already (else it is read here)."""
    import cv2

    device = torch_device(device)
    model = model if model is not None else load_model(weights, device, trust)
    names = dict(getattr(model, "names", {}) or {})
    if isinstance(names, list):
        names = dict(enumerate(names))
    layers = attention_layers(model)
    out = Path(save_dir) / "heatmaps"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for stem, frame in iter_frames(source, every):
        x, box = letterbox(frame, imgsz)
        x = x.to(device)
        captured = {}
        hooks = [m.register_forward_hook(lambda mod, inp, outp, i=i: captured.__setitem__(i, (inp[0], outp)))
                 for i, m in layers]
        try:
            overlay, _, caption = gradcam_image(model, x, frame, box, conf, iou, names)
        finally:
            for h in hooks:
                h.remove()
        cv2.putText(overlay, caption, (4, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
        path = out / f"{stem}_gradcam.jpg"
        cv2.imwrite(str(path), overlay)
        written.append(path)
        for i, m in layers:
            if i not in captured:  # not on the forward path of this input
                continue
            inp, outp = captured[i]
            spatial, s_how, channel, c_how = attention_maps(m, inp.detach(), outp.detach())
            spatial = to_frame(spatial, box, frame.shape)
            path = out / f"{stem}_attn_{i}_{type(m).__name__}.png"
            attention_figure(path, frame, spatial, s_how, channel, c_how,
                             f"{stem}: {i} {type(m).__name__} ({inp.shape[1]} channels, "
                             f"{inp.shape[2]}x{inp.shape[3]} map)")
            written.append(path)
    print(f"heatmaps: {len(written)} file(s) in {out} ({len(layers)} attention layer(s))")
    return written


def parse_opt(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", required=True, help="model .pt (our runs' best.pt/last.pt)")
    p.add_argument("--source", default=str(common.ROOT / "data" / "images"), help="image/folder/glob/video file")
    common.add_imgsz(p)
    p.add_argument("--conf-thres", type=float, default=0.25)
    p.add_argument("--iou-thres", type=float, default=0.45)
    p.add_argument("--every", type=int, default=30, help="videos: every n-th frame (frame 0 always)")
    common.add_device(p)
    p.add_argument("--project", default=None, help="save to project/name (default runs/heatmap)")
    p.add_argument("--name", default="exp")
    p.add_argument("--exist-ok", action="store_true")
    common.add_trust_weights(p)
    common.add_verbose(p)
    return p.parse_args(argv)


def main(opt) -> list[Path]:
    model = load_model(opt.weights, torch_device(opt.device), opt.trust_weights)  # first: a refused file makes no folder
    save_dir = run_folder.save_dir(opt.project, "heatmap", opt.name, opt.exist_ok)
    return save_heatmaps(opt.weights, opt.source, save_dir, opt.imgsz, opt.conf_thres, opt.iou_thres, opt.device,
                         opt.every, trust=opt.trust_weights, model=model)


if __name__ == "__main__":
    common.run_cli(main, parse_opt())
