"""The run folder: one owner for what a run writes and how a later or concurrent run may touch it.

- claiming a folder (``runs/train/exp``, ``exp2``, ...) atomically and holding its lock for the life of the process, so
  two runs never write into one folder (a kernel lock released however the holder exits);
- replacing every file a user keeps (last.pt, best.pt, results.csv, args.yaml) atomically through a temporary beside
  it, so an interrupted write leaves the previous content, and removing the temporaries a killed run left;
- results.csv kept at one row per epoch across interrupted and resumed runs.
"""

from __future__ import annotations

import atexit
import errno
import os
import sys
from pathlib import Path

from ultralytics.utils import LOGGER, YAML

ROOT = Path(__file__).resolve().parents[2]

def run_dir(project: str | None, task: str) -> str:
    """Absolute project folder (ultralytics puts relative ones under its own runs dir)."""
    return str(Path(project).resolve()) if project else str(ROOT / "runs" / task)


# --- flags and errors -------------------------------------------------------------------------------------------


TMP_SUFFIX = ".tmp"  # our temporaries: .<file>.tmp, hidden, beside the file they replace (one run owns its folder)
RUN_FILES = ("results.csv", "args.yaml")  # besides weights/*.pt: what a run writes that a user keeps


def temporary(path: Path) -> Path:
    """Where the new content of ``path`` is written before it replaces it: a hidden ``.<name>.tmp`` beside it (a kill
    mid-write leaves no second ``best.pt``-like name in the run folder; the next start there removes it)."""
    return path.with_name(f".{path.name}{TMP_SUFFIX}")


def replace_atomically(path: Path, write) -> None:
    """``write(tmp)`` writes the whole new content of ``path`` into a temporary beside it, which then replaces
    ``path`` in one rename: ``path`` is always either its previous content or the new one. A write that fails
    (ENOSPC, an exception, Ctrl-C) removes the temporary and re-raises; a killed process leaves it for
    :func:`remove_stale_temporaries`."""
    path = Path(path)
    tmp = temporary(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def stale_temporaries(save_dir: Path) -> list[Path]:
    """The temporaries of ours in ``save_dir`` (weights/.*.pt.tmp, .results.csv.tmp, .args.yaml.tmp, and the
    unhidden names earlier versions wrote)."""
    save_dir = Path(save_dir)
    found = [*save_dir.glob(f"weights/*.pt{TMP_SUFFIX}")]
    for f in RUN_FILES:
        found += [save_dir / f".{f}{TMP_SUFFIX}", save_dir / f"{f}{TMP_SUFFIX}"]
    return [f for f in found if f.is_file()]


def tidy_run_of(weights: str | Path) -> list[Path]:
    """Remove the temporaries a killed run left beside ``<run>/weights/<file>.pt`` (a kill during the final strip
    leaves one in a finished run) when no live process holds that run; what val.py, detect.py, export.py and train.py
    do with a file they are given. Returns what was removed."""
    weights = Path(weights).resolve()
    run = weights.parent.parent
    if weights.parent.name != "weights" or str(lock_path(run)) in _held or not stale_temporaries(run) \
            or not lock_run_folder(run):
        return []
    try:
        return remove_stale_temporaries(run)
    finally:
        release_run_folder(run)


def remove_stale_temporaries(save_dir: Path) -> list[Path]:
    """Delete the temporaries a killed run left in ``save_dir`` (ours only, :func:`stale_temporaries`); returns what
    was removed."""
    stale = stale_temporaries(save_dir)
    removed = []
    for f in stale:
        if f.is_file():
            f.unlink(missing_ok=True)
            removed.append(f)
    if removed:
        LOGGER.info(f"Removed {len(removed)} temporary file(s) an interrupted write left: {', '.join(map(str, removed))}")
    return removed


class AtomicYAML(YAML):
    """ultralytics' YAML whose ``save`` replaces the file atomically (args.yaml)."""

    @classmethod
    def save(cls, file="data.yaml", data=None, header=""):
        replace_atomically(Path(file), lambda tmp: YAML.save(tmp, data, header))


def atomic_strip_optimizer(f, s="", updates=None) -> dict:
    """ultralytics' ``strip_optimizer`` writing into a temporary that then replaces ``f`` (or ``s``) atomically.

    If stripping fails (disk full, an error) the previous file stays as it was, loadable (it still holds the
    optimizer state), and a warning says so; an interrupted strip (Ctrl-C, kill) leaves it untouched too.
    """
    from ultralytics.utils.torch_utils import strip_optimizer

    target = Path(s or f)
    tmp = temporary(target)
    try:
        with _without_log("Optimizer stripped from"):  # its line names the temporary; ours names the file
            out = strip_optimizer(f, s=str(tmp), updates=updates)
        if tmp.exists():  # strip_optimizer only warns (and writes nothing) for a file that is no checkpoint
            os.replace(tmp, target)
            LOGGER.info(f"Optimizer stripped from {target}, {target.stat().st_size / 1e6:.1f}MB")
        return out
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if not isinstance(e, Exception):
            raise
        reason = "the disk is full" if isinstance(e, OSError) and e.errno == errno.ENOSPC else f"{type(e).__name__}: {e}"
        LOGGER.warning(f"Could not strip the optimizer from {target} ({reason}); {target} is kept as the last epoch "
                       "saved it: loadable, with its optimizer state (a larger file)")
        return {}


class _Drop:
    def __init__(self, prefix: str):
        self.prefix = prefix

    def filter(self, record) -> bool:
        return not str(record.getMessage()).startswith(self.prefix)


class _without_log:
    """ultralytics' log lines starting with ``prefix`` dropped inside the block."""

    def __init__(self, prefix: str):
        self.filter = _Drop(prefix)

    def __enter__(self):
        LOGGER.addFilter(self.filter)

    def __exit__(self, *exc):
        LOGGER.removeFilter(self.filter)


def _csv_epoch(line: str) -> int | None:
    try:
        return int(float(line.split(",", 1)[0]))
    except ValueError:
        return None


def rewrite_results(csv: Path, header: str | None = None, row: str | None = None, keep_upto: int = 0) -> None:
    """Rewrite results.csv atomically, one row per epoch: rows of epochs up to ``keep_upto`` are kept, then ``row``
    (for epoch ``keep_upto + 1``) is added. Duplicate or later rows, left by an interrupted run, are dropped."""
    csv = Path(csv)
    lines = csv.read_text(encoding="utf-8").splitlines() if csv.exists() else []
    old_header, rows = (lines[0], lines[1:]) if lines and _csv_epoch(lines[0]) is None else (None, lines)
    by_epoch = {}
    for line in rows:
        e = _csv_epoch(line)
        if e is not None and 1 <= e <= keep_upto:
            by_epoch[e] = line  # the last row written for an epoch is the one its checkpoint follows
    if row is not None:
        by_epoch[keep_upto + 1] = row
    header = header or old_header
    text = "".join(f"{line}\n" for line in ([header] if header else []) + [by_epoch[e] for e in sorted(by_epoch)])
    if csv.exists() and text == "\n".join(lines) + ("\n" if lines else ""):
        return
    csv.parent.mkdir(parents=True, exist_ok=True)
    replace_atomically(csv, lambda tmp: tmp.write_bytes(text.encode("utf-8")))



LOCK_DIR = ".run-locks"  # <project>/.run-locks/<run name>.lock, outside the run folder (DDP's launcher deletes that)
_held: dict[str, int] = {}  # lock path -> open file descriptor, for this process's lifetime


class RunFolderBusy(RuntimeError):
    """A run folder that a live process holds."""


def lock_path(folder: Path) -> Path:
    return folder.parent / LOCK_DIR / f"{folder.name}.lock"


def _holder(path: Path) -> str:
    try:
        return path.read_text().split("\n", 1)[0].strip() or "?"
    except OSError:
        return "?"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def lock_run_folder(folder: str | Path) -> bool:
    """Hold ``folder``'s lock for the rest of this process (True), or False when a live process holds it.

    The lock file records the holder's pid and command. Where ``fcntl`` exists the lock is a kernel lock on that
    file, released when the holder exits however it exits (kill -9 included), so a stale lock is simply taken
    over; elsewhere the recorded pid is checked for liveness.
    """
    path = lock_path(Path(folder))
    key = str(path)
    if key in _held:
        return True
    try:
        import fcntl
    except ImportError:  # no kernel locks: O_EXCL creation, stale when the recorded pid is gone
        fcntl = None
    for _ in range(20):
        path.parent.mkdir(parents=True, exist_ok=True)  # again: a process giving up its claim may remove it
        if fcntl is None:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileNotFoundError:
                continue
            except FileExistsError:
                holder = _holder(path)
                if holder.isdigit() and not _pid_alive(int(holder)):
                    path.unlink(missing_ok=True)  # stale: take it over
                    continue
                return False
        else:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                return False
            try:  # the file may have been released and unlinked between our open and our lock: lock the new one
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n{' '.join(sys.argv)}\n".encode())
        _held[key] = fd
        return True
    return False


def _release_locks() -> None:
    for key, fd in list(_held.items()):
        try:
            Path(key).unlink(missing_ok=True)  # while still held: nobody else can be holding this file
        finally:
            os.close(fd)
            _held.pop(key, None)


atexit.register(_release_locks)


def release_run_folder(folder: str | Path, remove_if_empty: bool = False) -> None:
    """Give up ``folder`` (an input turned out to be bad after it was claimed): its lock, and the folder itself when
    ``remove_if_empty`` and nothing was written into it."""
    folder = Path(folder)
    fd = _held.pop(str(lock_path(folder)), None)
    if fd is not None:
        lock_path(folder).unlink(missing_ok=True)
        os.close(fd)
    if remove_if_empty:  # the folder, then the lock folder and the project folder if this left them empty
        for d in (folder, lock_path(folder).parent, folder.parent):
            try:
                d.rmdir()
            except OSError:
                break


def claim_run_folder(folder: str | Path, flag: str = "--exist-ok") -> Path:
    """Take ``folder`` for this process (create it if needed) or refuse, naming the live run that holds it."""
    folder = Path(folder)
    if not lock_run_folder(folder):
        raise RunFolderBusy(f"{folder} is in use by a run that is still going (pid {_holder(lock_path(folder))}); "
                            "wait for it to finish, stop it, or pick another --name")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def save_dir(project: str | None, task: str, name: str, exist_ok: bool) -> str:
    """YOLOv5-style run folder, created and locked for this process: project/name, else name2, name3, ... (the
    first that is free, atomically across processes: locked, then created with ``os.mkdir``); with ``exist_ok``
    project/name itself unless a live run holds it (a clear exit then)."""
    base = Path(run_dir(project, task))
    if exist_ok:
        try:
            return str(claim_run_folder(base / name))
        except RunFolderBusy as e:
            raise SystemExit(f"error: --exist-ok: {e}") from None
    base.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10000):
        folder = base / (name if n == 1 else f"{name}{n}")
        if folder.exists() or not lock_run_folder(folder):
            continue
        try:
            folder.mkdir()
        except FileExistsError:
            release_run_folder(folder)
            continue
        return str(folder)
    raise SystemExit(f"error: --name {name}: no free run folder under {base} ({name} to {name}9999 are taken)")
