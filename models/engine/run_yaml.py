"""The run's own model YAML: written once before training, trained from, and kept in the run folder.

A run needs its own model YAML when train.py changes the model it was given: attention inserted with
``--attention``, YOLOv5 loss gains from ``--hyp`` (the model's ``hyp:`` mapping), anchors to compute
(``anchors: 3`` in a hyp file) or AutoAnchor switched off. Those settings travel in the model YAML
so that checkpoints, resumed runs and DDP workers see them. This module is their one owner:

- :func:`write_run_yaml` builds the dict (from a config or from the YAML stored in a checkpoint), checks
  that it builds, writes it into the run folder keeping the source file's comments, and stages a copy
  outside the run folder that training reads (ultralytics' DDP launcher deletes the run folder before its
  workers start);
- :func:`restore_run_yaml` (a trainer callback) puts the copy back into the run folder when a launcher
  removed it.
"""

from __future__ import annotations

import shutil
from copy import deepcopy
from pathlib import Path

from models.parse.read import load_config, resolve_config
from models.surgery.insertion import blend_non_identity, insert_layers, validate
from models.surgery.spec import InsertError
from models.heads.loss import loss_hyp
from models.registry import ConfigError
from models.parse.text import to_text, write_text

STAGE_DIR = ".run-configs"  # beside the run folders: <project>/.run-configs/<run name>/<yaml>


def _source(cfg, weights, trust: bool = False) -> tuple[dict, str | None, str]:
    """(model dict, source text for its layout or None, file name) of ``cfg``, or of the YAML stored in ``weights``."""
    if cfg:
        d = load_config(cfg)
        template = None if isinstance(cfg, dict) else resolve_config(cfg)[0].read_text()
        name = Path(cfg).name if Path(str(cfg)).suffix in (".yaml", ".yml") else f"{Path(str(cfg)).name}.yaml"
        return d, template, name
    if not weights:
        raise ConfigError("the run's model needs a model: give --cfg or --weights")
    from models.weights.checkpoint import load_model

    d = deepcopy(getattr(load_model(weights, trust=trust), "yaml", None))
    if not isinstance(d, dict):
        raise ConfigError(f"{weights} stores no model YAML; give --cfg")
    name = Path(d.get("yaml_file") or "model.yaml").name
    d["yaml_file"] = f"{Path(weights).name} (its model YAML)"
    return d, None, name


def write_run_yaml(save_dir: str | Path, cfg=None, weights: str | None = None, attention: list[str] | tuple = (),
                   identity_blend: bool = False, hyp: dict | None = None, autoanchor: bool | None = None,
                   trust: bool = False) -> str:
    """Write the run's model YAML into ``save_dir`` and return the path of the staged copy to train from.

    ``cfg`` is a config (path, name or dict); without it the YAML stored in ``weights`` is used. ``attention``:
    insertion specs (``CBAM@backbone_end``; the file is then named ``model.yaml``). ``hyp``: YOLOv5 loss settings
    for the model's ``hyp:``; an ``anchors`` count in it replaces the YAML's anchors with that many per level,
    computed by AutoAnchor (YOLOv5's rule). ``autoanchor``: False keeps the YAML's anchors.
    ``trust``: read ``weights`` with unrestricted unpickling. Raises :class:`ConfigError` (:class:`InsertError` for
    insertions) before anything is written.
    """
    d, template, name = _source(cfg, weights, trust)
    result = insert_layers(d, list(attention))
    if attention:
        model = validate(result)
        if identity_blend:
            blend_non_identity(result, model)
        name = "model.yaml"
    out = result.cfg
    hyp = dict(hyp or {})
    if "anchors" in hyp:
        out["anchors"] = max(int(round(hyp.pop("anchors"))), 1)
    if hyp:
        out["hyp"] = {**(out.get("hyp") or {}), **hyp}
    if autoanchor is not None:
        out["autoanchor"] = bool(autoanchor)
    try:
        loss_hyp(out)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    validate(result)  # the final model builds (anchors, hyp and insertions together)
    if attention:
        note = [f"# Built by train.py --attention from {Path(str(result.source)).name}: "
                f"{' '.join(r.text for r in result.requests)}"]
    else:
        note = [f"# {name} with this run's training settings (written by train.py)"]
    text = to_text(out, result.origins(), template, note=note)
    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    write_text(save_dir / name, text)
    if attention:
        print(result.summary())
    staged = save_dir.parent / STAGE_DIR / save_dir.name / name
    staged.parent.mkdir(parents=True, exist_ok=True)
    write_text(staged, text)
    return str(staged)


def restore_run_yaml(trainer) -> None:
    """Trainer callback: put the run's own model YAML (staged by :func:`write_run_yaml`) back into the run folder."""
    from ultralytics.utils import RANK

    model = Path(str(trainer.args.model))
    if RANK in {-1, 0} and model.parent.parent.name == STAGE_DIR and model.is_file():
        target = Path(trainer.save_dir) / model.name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(model, target)


__all__ = ["InsertError", "STAGE_DIR", "restore_run_yaml", "write_run_yaml"]
