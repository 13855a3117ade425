"""Deploy-time reparameterisation: a trained YOLOv7 checkpoint + its deploy YAML -> a deploy checkpoint.

YOLOv7 trains with heads that deployment drops or folds: ``IDetect``'s implicit layers (ImplicitA before and
ImplicitM after each 1x1 conv) fold into the conv, and ``IAuxDetect``'s auxiliary head (the extra 1x1
convs feeding it, and its own ``m2`` convs) is removed. YOLOv7 ships deploy YAMLs for this
(``cfg/deploy/*.yaml``: the training rows without the auxiliary rows, ``Detect`` for the head). This tool
builds the deploy YAML, copies every layer before the head from the training checkpoint (their rows must
be identical), puts the training head's lead convs, with the implicit layers folded in, into the deploy
``Detect``, checks on a random image that both models give the same detections, and saves the result
(it never overwrites a file). ``RepConv`` layers are kept as trained; ``model.fuse()`` (which ultralytics
runs for validation, prediction and export) merges their branches.

    python tools/reparameterize.py runs/train/exp/weights/best.pt my-yolov7-w6-deploy.yaml -o w6-deploy.pt
"""

from __future__ import annotations

import argparse
import sys
from copy import deepcopy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import offline  # noqa: E402

offline.configure()

import torch  # noqa: E402

from models.parse.read import rows_of  # noqa: E402
from models.heads.anchor import AnchorHead, IDetect  # noqa: E402
from models.registry import ConfigError  # noqa: E402
from models.yolo import build_model  # noqa: E402


def deploy_model(trained, deploy_cfg):
    """The deploy model of ``trained`` (an AttentionDetectionModel with an anchor head) built from ``deploy_cfg``."""
    where = f"{deploy_cfg}"
    deploy = build_model(deploy_cfg, nc=trained.yaml["nc"], ch=trained.yaml.get("channels", 3))
    t_rows, d_rows = rows_of(trained.yaml), rows_of(deploy.yaml)
    head_at = len(d_rows) - 1
    if not isinstance(trained.model[-1], AnchorHead) or not isinstance(deploy.model[-1], AnchorHead):
        raise ConfigError(f"{where}: both models need an anchor head (IDetect/IAuxDetect trained, Detect deploy); got "
                          f"{type(trained.model[-1]).__name__} and {type(deploy.model[-1]).__name__}")
    if len(t_rows) <= head_at:
        raise ConfigError(f"{where}: the deploy YAML has {len(d_rows)} rows, the trained model {len(t_rows)}")
    for i in range(head_at):
        if list(t_rows[i]) != list(d_rows[i]):
            raise ConfigError(f"{where}: layer {i} differs from the trained model's: deploy {d_rows[i]!r}, trained "
                              f"{t_rows[i]!r}. A deploy YAML keeps every row before the head as it was in training")
    t_head, d_head = trained.model[-1], deploy.model[-1]
    if (t_head.nl, t_head.na, t_head.nc) != (d_head.nl, d_head.na, d_head.nc):
        raise ConfigError(f"{where}: head levels/anchors/classes (nl, na, nc) {(d_head.nl, d_head.na, d_head.nc)} "
                          f"do not match the trained head's {(t_head.nl, t_head.na, t_head.nc)}")
    state = {}
    for key, value in trained.state_dict().items():
        parts = key.split(".")
        if parts[0] == "model" and int(parts[1]) < head_at:
            state[key] = value
    lead = deepcopy(t_head)
    if isinstance(lead, IDetect):
        lead.fuse()  # ImplicitA / ImplicitM folded into the 1x1 convs
    for key, value in lead.state_dict().items():
        if key.startswith("m.") or key == "anchors":
            state[f"model.{head_at}.{key}"] = value
    missing, unexpected = deploy.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ConfigError(f"{where}: the trained weights do not fit the deploy model: missing {missing[:5]}, "
                          f"unexpected {unexpected[:5]}")
    deploy.names = dict(getattr(trained, "names", deploy.names))
    if hasattr(trained, "args"):
        deploy.args = trained.args
    return deploy.eval()


@torch.no_grad()
def max_difference(a, b, size: int | None = None, seed: int = 0) -> float:
    """Largest absolute difference of the decoded outputs of two eval-mode models on one random image."""
    stride = int(max(a.stride.max(), b.stride.max()))
    size = size or 4 * stride
    x = torch.rand(1, a.yaml.get("channels", 3), size, size, generator=torch.Generator().manual_seed(seed))
    ya, yb = a.eval()(x)[0], b.eval()(x)[0]
    return float((ya - yb).abs().max())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("weights", help="trained checkpoint (.pt) of a YOLOv7 model with IDetect or IAuxDetect")
    p.add_argument("deploy_cfg", help="deploy model YAML (the training rows without auxiliary rows, Detect head)")
    p.add_argument("-o", "--output", required=True, help="deploy checkpoint to write (never overwritten)")
    p.add_argument("--tolerance", type=float, default=1e-3, help="largest allowed output difference (pixels/scores)")
    opt = p.parse_args(argv)

    from models.weights.checkpoint import load_model

    out = Path(opt.output)
    if out.exists():
        raise SystemExit(f"error: {out} exists; choose another --output (files are never overwritten)")
    try:
        trained = load_model(opt.weights)
        deploy = deploy_model(trained, opt.deploy_cfg)
    except (ConfigError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from None
    diff = max_difference(trained, deploy)
    n_t, n_d = (sum(x.numel() for x in m.parameters()) for m in (trained, deploy))
    print(f"trained {n_t:,} parameters -> deploy {n_d:,}; largest output difference {diff:.2e}")
    if diff > opt.tolerance:
        raise SystemExit(f"error: deploy outputs differ from the trained model's by {diff:.3g} > {opt.tolerance:g}")
    args = getattr(trained, "args", None)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": deploy.float(), "ema": None, "optimizer": None, "epoch": -1,
                "train_args": dict(args) if isinstance(args, dict) else {}, "reparameterized_from": str(opt.weights)}, out)
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
