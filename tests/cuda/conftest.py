"""The cuda-marked tests: every file here sets ``pytestmark = pytest.mark.cuda`` (the default run leaves them out;
``pytest -m cuda`` runs them). Without a CUDA device each one is skipped with the one reason "no CUDA device".

``--cuda-device cpu`` runs them on the CPU instead, the scripts on small settings: a check of the tests themselves
on a machine without a GPU (no CUDA kernels are exercised, so it proves nothing about CUDA).
"""

from __future__ import annotations

import pytest
import torch

NO_CUDA = "no CUDA device"


@pytest.fixture(scope="session", autouse=True)
def device(request) -> torch.device:
    """The device under test; session-scoped so that it is set up (or skips) before any module-scoped fixture."""
    dev = torch.device(request.config.getoption("--cuda-device"))
    if dev.type == "cuda" and not torch.cuda.is_available():
        pytest.skip(NO_CUDA)
    return dev


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """The no-CUDA skip is this file's decision: reported here, so ``-ra`` folds every one of them into one line."""
    report = yield
    if report.skipped and isinstance(report.longrepr, tuple) and report.longrepr[2] == f"Skipped: {NO_CUDA}":
        report.longrepr = (__file__, None, report.longrepr[2])
    return report


@pytest.fixture
def tf32_off():
    """float32 matrix products and convolutions in full float32 (no TF32) for the duration of a test."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
