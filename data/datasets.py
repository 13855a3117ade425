"""Resolve ``--data`` arguments and make the built-in dataset on first use.

``--data`` may be a path, a bare name of a YAML in ``data/`` (``shapes.yaml``), or an ultralytics
dataset name (``coco128.yaml``, ``VOC.yaml``, ``coco.yaml``), which ultralytics downloads where there
is internet. A YAML with a ``generator:`` section is made here, then handed to ultralytics as a
resolved copy with an absolute ``path``.
"""

from __future__ import annotations

from pathlib import Path

import yaml

DATA_DIR = Path(__file__).resolve().parent


def find_data_yaml(data: str | Path) -> Path | None:
    p = Path(data)
    for c in (p, DATA_DIR / p.name, DATA_DIR / f"{p.name}.yaml"):
        if c.is_file():
            return c.resolve()
    return None


def prepare_data(data: str | Path) -> str:
    """Return what to pass to ultralytics as ``data=``; generates the synthetic dataset if the YAML asks for it."""
    path = find_data_yaml(data)
    if path is None:
        return str(data)  # an ultralytics built-in name, or a path ultralytics will report as missing
    try:
        d = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not a valid dataset YAML: {e}") from e
    if not isinstance(d, dict) or "generator" not in d:
        return str(path)
    from data.synthetic import generate

    root = (path.parent / d.get("path", f"../datasets/{path.stem}")).resolve()
    params = d.pop("generator") or {}
    generate(root, **params)
    d["path"] = str(root)
    resolved = root / path.name
    text = yaml.safe_dump(d, sort_keys=False)
    if not resolved.exists() or resolved.read_text() != text:
        resolved.write_text(text)
    return str(resolved)


def is_builtin(data: str | Path) -> bool:
    """Whether ``data`` names a dataset this project generates (a YAML with a ``generator:`` section, e.g. shapes.yaml)."""
    path = find_data_yaml(data)
    if path is None:
        return False
    try:
        d = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, OSError, UnicodeDecodeError):
        return False
    return isinstance(d, dict) and "generator" in d


class DataError(ValueError):
    """A dataset argument that cannot be used, with a one-line message naming the file and what to do."""


def _first_line(e: BaseException) -> str:
    text = " ".join(str(e).replace("❌", "").split())
    return text or type(e).__name__


def _is_ultralytics_dataset(file: Path) -> bool:
    """Whether ``file`` is one of the dataset YAMLs shipped inside the ultralytics package (coco128.yaml, VOC.yaml)."""
    import ultralytics

    return Path(ultralytics.__file__).parent / "cfg" / "datasets" in file.resolve().parents


class _DropBlank:
    def filter(self, record) -> bool:
        return bool(str(record.getMessage()).strip())


def _no_blank_lines():
    """ultralytics' dataset check logs an empty line before its error; keep the error to one line."""
    from contextlib import contextmanager

    from ultralytics.utils import LOGGER

    @contextmanager
    def dropping():
        f = _DropBlank()
        LOGGER.addFilter(f)
        try:
            yield
        finally:
            LOGGER.removeFilter(f)

    return dropping()


def check_dataset(data: str | Path, split: str = "") -> str:
    """``data`` prepared (:func:`prepare_data`) and checked with ultralytics' ``check_det_dataset``, without running
    any download; returns what to pass to ultralytics as ``data=``. Raises :class:`DataError` (one line) when the
    YAML is unreadable, lacks keys, or its images are not on this machine."""
    import os

    from ultralytics.data.utils import check_det_dataset
    from ultralytics.utils.checks import check_file

    try:
        resolved = prepare_data(data)
    except (ValueError, OSError, TypeError) as e:
        raise DataError(_first_line(e)) from None
    try:
        file = Path(check_file(resolved, hard=False) or resolved)
    except Exception:  # a URL, say: ultralytics' own check below reports it
        file = Path(resolved)
    if "://" not in str(resolved) and not file.exists():
        raise DataError(f"{data}: no such file (a dataset YAML path, a name in data/, or an ultralytics dataset name "
                        "such as coco128.yaml)")
    try:
        with _no_blank_lines():
            info = check_det_dataset(resolved, autodownload=False, split=split)
    except FileNotFoundError as e:
        if "missing path" not in str(e):  # a split the YAML does not name (val.py --task test)
            raise DataError(f"{data}: the YAML has no '{split}:' entry" if split else f"{data}: {_first_line(e)}") from None
        from ultralytics.utils import YAML

        try:
            download = YAML.load(file).get("download") if file.is_file() else None
        except Exception:
            download = None
        missing = str(e).split("missing path", 1)[-1].split("\n")[0].strip(" '") if "missing path" in str(e) else ""
        where = f" ({missing})" if missing else ""
        if download and _is_ultralytics_dataset(file):
            online = os.environ.get("YOLO_OFFLINE", "").lower() not in {"1", "true"}
            if online:  # ultralytics' own dataset on a machine with internet: let the trainer download it
                return resolved
            raise DataError(f"{data}: an ultralytics dataset that is downloaded on first use, which needs internet "
                            f"once; its images are not on this machine{where}. Run once with internet and "
                            "YOLO_OFFLINE=0, or download it yourself to that path, or pass a local dataset YAML")
        extra = " (its 'download:' entry is never run: only ultralytics' own dataset YAMLs are downloaded)" if download else ""
        raise DataError(f"{data}: images not found{where}{extra}; fix 'path'/'train'/'val' in the YAML") from None
    except Exception as e:
        raise DataError(f"{data}: {_first_line(e)}") from None
    check_images(data, info, [split] if split else ["train", "val"])
    return resolved


def check_images(data, d: dict, splits: list[str]) -> None:
    """Every split folder holds at least one readable image, else a :class:`DataError` naming the folder: an empty
    folder, or one whose files are not images (ultralytics reports the first as a missing file and the second with
    every skipped file's warning in one line). Stops at the first readable image, so a real dataset costs one file."""
    from PIL import Image
    from ultralytics.data.utils import IMG_FORMATS

    readable_image_errors()
    for split in splits:
        folders = d.get(split) or []
        for folder in [folders] if isinstance(folders, (str, Path)) else folders:
            folder = Path(folder)
            if not folder.is_dir():
                continue  # a list file (.txt) or a missing folder: ultralytics' check reports those
            images, others, first_error = 0, 0, None
            for f in folder.rglob("*"):
                if not f.is_file():
                    continue
                if f.suffix.lower().lstrip(".") not in IMG_FORMATS:
                    others += 1
                    continue
                images += 1
                try:
                    with Image.open(f):
                        break  # a readable image: the folder is fine
                except Exception as e:
                    first_error = first_error or f"{f.name}: {_first_line(e)}"
            else:
                where = f"{data}: {split}: {folder}"
                if images:
                    raise DataError(f"{where}: none of its {images} image file(s) is a readable image (e.g. {first_error}); "
                                    "replace them with the real images")
                other = f" ({others} other file(s), none an image: {', '.join(sorted(IMG_FORMATS)[:6])}, ...)" \
                    if others else ""
                raise DataError(f"{where}: the folder holds no images{other}; put the {split} images there, or point "
                                f"'{split}:' in the YAML at the folder that holds them")


def scan_problems(img_path: str | Path | list, prefix: str = "") -> str | None:
    """One summary line of the images and labels ultralytics' dataset scan skipped (read from its ``.cache`` file),
    or None when there were none (or no cache was written)."""
    from ultralytics.data.utils import img2label_paths, load_dataset_cache_file

    first = img_path[0] if isinstance(img_path, (list, tuple)) else img_path
    if not first or not Path(first).is_dir():
        return None
    cache = Path(img2label_paths([str(Path(first) / "x.jpg")])[0]).parent.with_suffix(".cache")
    try:
        scan = load_dataset_cache_file(cache)
    except Exception:
        return None
    corrupt = [m for m in scan.get("msgs", []) if "ignoring corrupt image/label" in m]
    if not corrupt:
        return None
    shown = []
    for m in corrupt[:3]:
        file, reason = m.split(": ignoring corrupt image/label: ", 1)
        shown.append(f"{Path(file.split()[-1]).name} ({' '.join(reason.split())[:120]})")
    more = f"; and {len(corrupt) - 3} more" if len(corrupt) > 3 else ""
    n = len(corrupt)
    return (f"data: {prefix}{n} image{'s' * (n > 1)} skipped, corrupt image or label (see the scan warnings above): "
            f"{'; '.join(shown)}{more}")


def readable_image_errors() -> None:
    """Report an undecodable image as such: ultralytics' ``Image.open`` patch retries an unidentified image with the
    pi-heif plugin and, with that package absent (it is never installed here), reports ``No module named 'pi_heif'``
    for a corrupt JPEG. Without pi-heif this says what is wrong with the file instead; idempotent."""
    import importlib.util

    from PIL import Image

    import ultralytics.utils.patches as patches

    if importlib.util.find_spec("pi_heif") or getattr(Image.open, "_readable_errors", False):
        return
    original = patches._image_open

    def image_open(fp, *args, **kwargs):
        try:
            return original(fp, *args, **kwargs)
        except Image.UnidentifiedImageError:
            raise Image.UnidentifiedImageError(
                "not a readable image (corrupt, truncated or not an image file; HEIC/HEIF images need "
                "`pip install pi-heif`)") from None

    image_open._readable_errors = True
    Image.open = patches.image_open = image_open
