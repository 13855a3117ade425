"""A pytest plugin that writes each test's outcome as one JSON line, as it happens, and the reader of that file.

    python -m pytest -m cuda -p benchmarks.pytest_outcomes --outcomes tests.jsonl

benchmarks/gpu_check.py runs the cuda-marked tests this way: the lines survive a run stopped part-way, and carry what
each test recorded with ``record_property`` (the report's tables are made from them). Lines: ``{"collected":
[nodeids]}`` once, then ``{"nodeid", "outcome", "when", "seconds", "message", "props"}`` per test (a setup skip or
error, the call, a teardown error) and per collection error.
"""

from __future__ import annotations

import json
from pathlib import Path

RANK = {"not run": 0, "passed": 1, "skipped": 2, "failed": 3, "error": 4}

_SINK: dict = {}


def pytest_addoption(parser):
    parser.addoption("--outcomes", default=None, help="file to write each test's outcome to (JSON lines)")


def pytest_configure(config):
    _SINK.update(path=config.getoption("--outcomes"), setup={})


def _emit(record: dict) -> None:
    if _SINK.get("path"):
        with open(_SINK["path"], "a") as f:
            f.write(json.dumps(record, default=str) + "\n")


def _message(report) -> str:
    lr = report.longrepr
    if lr is None:
        return ""
    if isinstance(lr, tuple):  # a skip: (file, line, "Skipped: reason")
        return str(lr[2]).removeprefix("Skipped: ")
    crash = getattr(lr, "reprcrash", None)
    return (crash.message if crash is not None else str(lr))[-2000:]


def pytest_collection_finish(session):
    _emit({"collected": [item.nodeid for item in session.items]})


def pytest_collectreport(report):
    if report.failed:
        _emit({"nodeid": report.nodeid, "outcome": "error", "when": "collect", "message": _message(report)})


def pytest_runtest_logreport(report):
    if report.when == "setup" and report.passed:  # module-scoped fixtures (a training run) count for the test
        _SINK["setup"][report.nodeid] = report.duration
    elif report.when == "call" or not report.passed:
        outcome = report.outcome if report.when == "call" else ("error" if report.failed else report.outcome)
        seconds = report.duration + (_SINK["setup"].get(report.nodeid, 0.0) if report.when == "call" else 0.0)
        _emit({"nodeid": report.nodeid, "outcome": outcome, "when": report.when, "seconds": round(seconds, 3),
               "message": _message(report), "props": dict(report.user_properties)})


def read_outcomes(path: Path) -> list[dict]:
    """Every collected test with its worst outcome ('not run' until one arrives), then those outside the collection."""
    collected, tests = [], {}
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            rec = json.loads(line)
        except ValueError:  # the last line of a killed run
            continue
        if "collected" in rec:
            collected = rec["collected"]
            continue
        old = tests.get(rec["nodeid"], {"outcome": "not run", "props": {}})
        props = {**old.get("props", {}), **rec.get("props", {})}
        tests[rec["nodeid"]] = {**old, **rec, "props": props} if RANK[rec["outcome"]] >= RANK[old["outcome"]] else \
            {**old, "props": props}
    known = set(collected)
    return [tests.get(n, {"nodeid": n, "outcome": "not run"}) for n in collected] + \
        [t for n, t in tests.items() if n not in known]
