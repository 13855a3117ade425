"""Test set-up: offline ultralytics, project root importable, bundled font in place."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import offline  # noqa: E402  (sets YOLO_OFFLINE and friends before ultralytics is imported)

offline.configure()
