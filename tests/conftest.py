"""Test set-up: offline ultralytics, project root importable, bundled font in place, cuBLAS deterministic-ready."""

import os
import sys
from pathlib import Path

# deterministic cuBLAS needs this before CUDA initialises (CUDA's cuBLAS docs, "Results reproducibility"): the
# cuda-marked tests run modules under torch.use_deterministic_algorithms(True); no effect without a GPU
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import offline  # noqa: E402  (sets YOLO_OFFLINE and friends before ultralytics is imported)

if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest-xdist runs one worker per core: one intra-op thread each (and in the scripts tests start), so that the
    # workers do not spin-wait on each other's cores
    os.environ.setdefault("OMP_NUM_THREADS", "1")

offline.configure()


import pytest  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--cuda-device", default="cuda",
                     help="device of the cuda-marked tests (tests/cuda/); 'cpu' runs them without a GPU, on small "
                          "settings, to check the tests themselves")


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> str:
    """A small built-in-style dataset YAML (16 train / 8 val images at 128 px), made by the real generator path."""
    root = tmp_path_factory.mktemp("data")
    yaml_file = root / "tiny_shapes.yaml"
    yaml_file.write_text(
        "path: tiny_shapes\ntrain: images/train\nval: images/val\n"
        "names: {0: circle, 1: rectangle, 2: triangle, 3: star, 4: cross}\n"
        "generator: {n_train: 16, n_val: 8, size: 128, seed: 1}\n"
    )
    from data.datasets import prepare_data

    return prepare_data(str(yaml_file))


@pytest.fixture(scope="module")
def one_thread():
    """Small models: one intra-op thread is faster, much faster on a shared, loaded CPU (no spin-waiting).

    Modules of small-model tests use it with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _restore_torch_global_state():
    """Every test starts and ends with the process-wide torch switches as they were.

    ultralytics' trainer (``deterministic=True``, train.py's default) turns on
    ``torch.use_deterministic_algorithms(True, warn_only=True)`` and leaves it on; an in-process training test
    would otherwise change what later tests measure.
    """
    import torch

    state = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.get_default_dtype(), torch.is_grad_enabled())
    yield
    torch.use_deterministic_algorithms(state[0], warn_only=state[1])
    torch.set_default_dtype(state[2])
    torch.set_grad_enabled(state[3])
