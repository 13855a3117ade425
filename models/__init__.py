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
them to where the classes live now (:mod:`models.weights.moved`), for this project's loader and for a plain
``torch.load``.

Importing the package makes ultralytics read checkpoints through this project's restricted loader
(:func:`models.patches.restrict_checkpoint_loading`): ``ultralytics.YOLO("best.pt")`` then never runs code
a file names.
"""

from models.weights.moved import install_moved_modules

install_moved_modules()


def _read_for_ultralytics(weight):
    from models.weights.checkpoint import read_for_ultralytics

    return read_for_ultralytics(weight)


def _restrict_ultralytics_loading():
    from models.patches import restrict_checkpoint_loading

    restrict_checkpoint_loading(_read_for_ultralytics)


_restrict_ultralytics_loading()
