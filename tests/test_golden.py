"""Golden tests: every fixture in tests/fixtures/golden/ against ours, in float64, eval and train mode.

One test per fixture file found (a fixture added to the directory is tested without touching this file). Ours is
built as the sidecar says (``ours_ctor``, ``form`` included), the official state is placed by the key map, and
each forward starts from that state. A fixture whose module cannot yet be configured as the official one fails
here (missing keys, shapes or values), it is never skipped. See ``tests/golden.py`` for the format.
"""

from __future__ import annotations

import inspect
import json

import pytest

from models.registry import attention_specs
from tests.golden import ATOL, FIXTURES, fixture_names, load, max_differences

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = fixture_names()


def test_fixtures_are_present_and_small():
    """Data with its provenance: each fixture small (under 300 KB), under 12 MB in all."""
    assert len(NAMES) >= 40, NAMES
    total = sum(p.stat().st_size for p in FIXTURES.iterdir())
    assert total < 12 * 2**20, f"tests/fixtures/golden is {total / 2**20:.2f} MB; keep it under 12 MB"
    big = [p.name for p in FIXTURES.iterdir() if p.stat().st_size > 300 * 2**10]
    assert not big, f"fixtures over 300 KB (use a smaller C, smaller maps or fewer inputs): {big}"
    assert {p.suffix for p in FIXTURES.iterdir()} <= {".npz", ".json"}, "fixtures are npz data + json sidecars only"
    for name in NAMES:
        meta = json.loads((FIXTURES / f"{name}.json").read_text())
        assert (FIXTURES / f"{name}.npz").exists(), name
        for key in ("module", "repo", "commit", "C", "ours_ctor", "keymap_to_ours"):
            assert key in meta, f"{name}.json has no {key!r}"
        assert meta.get("reference", "official") in ("official", "port", "pseudo-code"), name


@pytest.mark.parametrize("name", NAMES)
def test_matches_the_official_code(name):
    fx = load(name)
    diffs = max_differences(fx)
    worst = max(diffs.values())
    assert worst <= ATOL, (
        f"{name}: ours ({fx.meta['module']}, {fx.meta['ours_ctor']}) differs from {fx.meta['reference']} "
        f"{fx.source} by max |diff| {worst:.3g} (atol {ATOL:g}); per output: "
        + ", ".join(f"{k} {v:.3g}" for k, v in diffs.items())
    )


def test_every_official_form_is_checked():
    """A module that offers ``form="official"`` has a golden fixture for it (the docs table claims only those)."""
    checked = {}
    for name in NAMES:
        meta = json.loads((FIXTURES / f"{name}.json").read_text())
        checked.setdefault(meta["module"], set()).add(meta["ours_ctor"].get("form"))
    for spec in attention_specs():
        for form in spec.forms:
            if form.startswith("official"):
                assert form in checked.get(spec.name, ()), f"{spec.name}: form {form!r} has no golden fixture"
        if spec.forms:
            default = inspect.signature(spec.cls).parameters["form"].default
            assert default in spec.forms
