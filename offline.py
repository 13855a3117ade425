"""Keep ultralytics offline and quiet; call :func:`configure` before importing ultralytics.

- ``YOLO_OFFLINE=1`` stops the import-time network probe; ``YOLO_AUTOINSTALL=false`` stops pip.
- ``YOLO_CONFIG_DIR`` defaults to ``.ultralytics/`` in the project, so settings and fonts stay here.
- ultralytics' dataset checks and plots look for ``Arial.ttf`` in that folder and otherwise try to
  download it. We place matplotlib's DejaVu Sans (Bitstream Vera licence, shipped with matplotlib,
  an ultralytics dependency) there under the names ultralytics asks for, so nothing is fetched.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent
FONT_NAMES = ("Arial.ttf", "Arial.Unicode.ttf")


def _dejavu() -> Path | None:
    spec = importlib.util.find_spec("matplotlib")
    if not spec or not spec.submodule_search_locations:
        return None
    font = Path(next(iter(spec.submodule_search_locations))) / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
    return font if font.exists() else None


def configure() -> None:
    """Set the offline environment and install the fallback font (idempotent, cheap)."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(ROOT / ".ultralytics"))
    settings = Path(os.environ["YOLO_CONFIG_DIR"]).expanduser() / "Ultralytics"
    font = _dejavu()
    if font is None:
        return
    try:
        settings.mkdir(parents=True, exist_ok=True)
        for name in FONT_NAMES:
            if not (settings / name).exists():
                shutil.copyfile(font, settings / name)
    except OSError:  # read-only location: ultralytics will only warn
        pass
