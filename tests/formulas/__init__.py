"""Parameter-count formulas from the papers, one file per attention family.

Each file defines ``PARAMS = {"Name": lambda c: <count at c channels>, ...}`` with the paper's
formula (biases and norm affine parameters included, written out as the paper's terms). The module
test matrix checks every registered module against its line here at ``REFERENCE_C``.
"""

import importlib
import pkgutil

REFERENCE_C = 256
PARAMS: dict = {}
for _info in pkgutil.iter_modules(__path__):
    _mod = importlib.import_module(f"{__name__}.{_info.name}")
    _dup = set(PARAMS) & set(_mod.PARAMS)
    assert not _dup, f"formulas defined twice: {_dup}"
    PARAMS.update(_mod.PARAMS)
