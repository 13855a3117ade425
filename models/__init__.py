"""The model side of the project: layers, attention modules, heads, the YAML parser and what works on built models.

Rooms (each a subpackage; the levels test, tests/test_layering.py, keeps imports pointing down):

- ``registry``: the layer contract: the name store, argument binding and the width rule, the module protocol;
- ``layers``, ``attention``, ``heads``: what a YAML row can name (blocks, attention modules, detection heads and losses);
- ``dialects``: other projects' names and argument readings, wrapped around the registry;
- ``parse``: a model YAML's way to modules: read (file -> checked dict), plan (rows resolved), build (modules);
- ``yolo``: the detector (:func:`models.yolo.build_model`, :class:`models.yolo.AttentionDetectionModel`);
- ``weights``: checkpoint safety and formats, other projects' models, weight transfer;
- ``surgery``: inserting layers into a model YAML;
- ``engine``: the glue to the ultralytics engine (trainer, validator, run folders, checks);
- ``patches``: every ultralytics global this project swaps while it runs, declared and pinned by a test.

Checkpoints pickle classes by module path; those written before the rooms name the old flat modules. ``MOVED`` maps
them to where the classes live now, for this project's loader and for a plain ``torch.load``.

Importing the package makes ultralytics read checkpoints through this project's restricted loader
(:func:`models.patches.restrict_checkpoint_loading`): ``ultralytics.YOLO("best.pt")`` then never runs code
a file names.
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


if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
    sys.meta_path.append(_MovedModules())


def _read_for_ultralytics(weight):
    from models.weights.checkpoint import read_for_ultralytics

    return read_for_ultralytics(weight)


def _restrict_ultralytics_loading():
    from models.patches import restrict_checkpoint_loading

    restrict_checkpoint_loading(_read_for_ultralytics)


_restrict_ultralytics_loading()
