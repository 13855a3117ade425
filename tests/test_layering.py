"""The house reads bottom-up: registry -> modules -> parser -> model -> engine glue -> scripts and tools.

Each file of ``models/`` has a level; a file may import files of its own level or below, never above. A new file
must be given a level here, which is the point: where it sits is a decision, not an accident.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

LEVELS = {
    # 0: the layer contract (store, binding, protocols, the instance); one YAML value; the patched engine targets
    "models.registry": 0, "models.registry.values": 0, "models.patches": 0,
    "models.parse": 0, "models.engine": 0,  # package docstrings
    # 1: what a row can name (layers, attention modules, heads, losses); reading and writing YAML files; the probe
    "models.attention": 1, "models.layers": 1, "models.heads": 1, "models.parse.read": 1, "models.parse.text": 1,
    "models.registry.arguments": 0, "models.parse.stale": 1,
    "models.parse.probe": 1,
    # 2: other projects' names and readings, around the registry
    "models.dialects": 2,
    # 3: the YAML's way: plan (rows resolved through the dialect layer), build (modules)
    "models.parse.plan": 3, "models.parse.build": 3,
    # 4: the model
    "models.yolo": 4,
    # 5: what works on built models and files: checkpoints, transfer, insertion, run folders and YAMLs, checks
    "models.weights": 5, "models.surgery": 5, "models.engine.run_yaml": 5, "models.engine.run_folder": 5,
    "models.engine.checks": 5, "models.engine.validator": 5, "models.engine.predictor": 5, "models.heads.autoanchor": 5,
    # 6: the trainer
    "models.engine.trainer": 6,
}
# Imports made at run time by name, the only edges the level check cannot see; each is allowed here for its reason.
RUNTIME_IMPORTS = {
    "models/registry/store.py": "the registry imports its LOCATIONS on the first look-up (the one upward edge)",
    "models/attention/__init__.py": "the attention package imports its family files",
    "models/weights/moved.py": "old module paths of checkpoints import as the modules that hold their classes now",
    "models/weights/unpickle.py": "classes a checkpoint names, after the allow-list admitted them",
    "models/patches.py": "the ultralytics modules whose declared targets are swapped",
}


def level_of(module: str) -> int | None:
    parts = module.split(".")
    for k in range(len(parts), 1, -1):
        name = ".".join(parts[:k])
        if name in LEVELS:
            return LEVELS[name]
    return None


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(parts)


def imports_of(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
            out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names if node.module == "models"]
    return out


MODEL_FILES = sorted(p for p in (ROOT / "models").rglob("*.py"))


@pytest.mark.parametrize("path", MODEL_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_models_import_nothing_above_their_level(path):
    me = module_name(path)
    if me == "models":
        return
    mine = level_of(me)
    assert mine is not None, f"{me} has no level in tests/test_layering.py LEVELS: decide where it sits"
    upward = [(line, mod) for line, mod in imports_of(path)
              if mod.startswith("models.") and (level_of(mod) or 0) > mine]
    assert not upward, f"{me} (level {mine}) imports upward: " + ", ".join(
        f"line {line}: {mod} (level {level_of(mod)})" for line, mod in upward)


def test_imports_by_name_happen_only_where_allowed():
    found = set()
    for path in MODEL_FILES:
        text = path.read_text()
        if "import_module(" in text or "__import__(" in text:
            found.add(str(path.relative_to(ROOT)))
    assert found == set(RUNTIME_IMPORTS), f"imports by name outside the allowed places: {sorted(found - set(RUNTIME_IMPORTS))}"


def test_the_registry_locations_are_the_rooms_above_it():
    """The registry's one upward edge: it loads the modules that register layers, all of them above level 0."""
    from models.registry.layers import LOCATIONS

    assert all((level_of(m) or 0) > 0 for m in LOCATIONS), LOCATIONS
    assert "models.dialects" not in " ".join(LOCATIONS), "the dialect layer wraps the registry; the registry never loads it"


def test_no_tool_or_benchmark_imports_a_script():
    scripts = {"train", "val", "detect", "export"}
    bad = []
    for path in sorted((ROOT / "tools").glob("*.py")) + sorted((ROOT / "benchmarks").glob("*.py")):
        for line, mod in imports_of(path):
            if mod.split(".")[0] in scripts:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {mod}")
    assert not bad, bad


def test_registry_alone_resolves_every_name():
    """``from models.registry import LAYERS`` is enough: the registry imports the places that register into it."""
    code = ("import offline; offline.configure()\n"
            "from models.registry import LAYERS\n"
            "print(LAYERS.get('CBAM').cls.__name__, LAYERS.get('AnchorDetect').kind, 'C3Att' in LAYERS, len(LAYERS))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    name, kind, c3att, n = out.stdout.split()
    assert (name, kind, c3att) == ("CBAM", "head", "True") and int(n) >= 70


def test_parser_restores_the_process_wide_default_activation():
    from ultralytics.nn.modules import Conv

    from models.parse.build import parse_model

    before = Conv.default_act
    d = {"nc": 2, "activation": "nn.ReLU()", "backbone": [[-1, 1, "Conv", [8, 3, 2]]],
         "head": [[-1, 1, "Conv", [8, 3, 2]]]}
    layers, _ = parse_model(d, verbose=False)
    assert isinstance(layers[0].act, __import__("torch").nn.ReLU)  # the YAML's activation was used while building
    assert Conv.default_act is before
