"""Every golden fixture (tests/fixtures/golden/: the official implementations' float64 outputs) against ours on the
GPU in float32 with TF32 off, eval and train mode: the largest difference relative to the largest official output
(at least 1) within :data:`RTOL`. On the CPU in float32 the worst of them is below 1e-6."""

from __future__ import annotations

import pytest
import torch

from tests.golden import Fixture, fixture_names, load, max_differences

pytestmark = pytest.mark.cuda

RTOL = 1e-4


def relative_difference(fx: Fixture, device) -> tuple[float, float]:
    """(max |ours - official| over every output of both modes in float32, that relative to max(1, |official|))."""
    diffs = max_differences(fx, device=device, dtype=torch.float32)
    scale = 1.0
    for key in diffs:
        mode, i = key.split(".")
        scale = max(scale, float(fx.expected(mode, int(i)).abs().max()))
    worst = max(diffs.values())
    return worst, worst / scale


@pytest.mark.parametrize("name", fixture_names())
def test_float32_matches_the_official_code(name, device, tf32_off, record_property):
    fx = load(name)
    meta = fx.meta
    record_property("fixture", name)
    record_property("module", meta["module"])
    record_property("form", meta["ours_ctor"].get("form", ""))
    worst, rel = relative_difference(fx, device)
    record_property("max_abs", worst)
    record_property("rel", rel)
    assert rel <= RTOL, (f"{name}: float32 on {device} differs from {meta.get('reference', 'official')} "
                         f"{meta['repo']} by {rel:.3g} of the largest output (max |diff| {worst:.3g}; limit {RTOL:g})")
