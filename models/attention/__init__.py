"""Attention modules, one file per family. Importing this package registers every module.

Each family file decorates its classes with :func:`models.registry.register_attention`; the files are
discovered here, so adding a family never needs an edit of this file or of the parser.
"""

import importlib
import pkgutil

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")
