"""Module paths of checkpoints written before the rooms: where their classes live now.

Checkpoints pickle classes by module path; those written before ``models/`` was split into rooms name the old flat
modules. :data:`MOVED` maps them to the modules that hold the classes now: this project's loader reads it
(:mod:`models.weights.unpickle`), and :func:`install_moved_modules` (run when the ``models`` package is imported)
lets a plain ``torch.load`` import an old path as a module of its own holding the same objects.
"""

import importlib
import importlib.abc
import importlib.util
import sys

MOVED = {  # module path in checkpoints written before the rooms -> module now
    "models.attention_blocks": "models.layers.attention_blocks",
    "models.yolov5_legacy": "models.layers.yolov5",
    "models.yolov7_blocks": "models.layers.yolov7",
    "models.protocol": "models.registry.protocol",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old module path in :data:`MOVED` as a module of its own holding the names of the module that holds
    its classes now (the same objects; the module now keeps its own ``__spec__``)."""

    def find_spec(self, fullname, path=None, target=None):
        return importlib.util.spec_from_loader(fullname, self) if fullname in MOVED else None

    def create_module(self, spec):
        return None  # the default module object

    def exec_module(self, module):
        now = importlib.import_module(MOVED[module.__spec__.name])
        module.__dict__.update({k: v for k, v in vars(now).items() if not k.startswith("__")})


def install_moved_modules() -> None:
    """Make the old module paths importable (once per process)."""
    if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
        sys.meta_path.append(_MovedModules())
