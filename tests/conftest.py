from pathlib import Path

import os

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
SAMPLES = ROOT / "sceneparse" / "samples"


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """The user's sceneparse cache (OpenVINO conversions, `--engine auto` choices) stays untouched:
    each test worker has its own, shared by its tests as one user's cache is by their commands."""
    before = os.environ.get("SCENEPARSE_CACHE")
    os.environ["SCENEPARSE_CACHE"] = str(tmp_path_factory.mktemp("sceneparse-cache"))
    yield
    if before is None:
        os.environ.pop("SCENEPARSE_CACHE", None)
    else:
        os.environ["SCENEPARSE_CACHE"] = before


@pytest.fixture
def shared_data() -> Path:
    """The real datasets beside the project; tests that need them skip when they are absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent (real datasets are not shipped with the repo)")
    return SHARED_DATA


@pytest.fixture
def samples() -> Path:
    return SAMPLES


# A small five-class label set for synthetic checkpoints.
CLASSES = ["road", "car", "sky", "tree", "person"]
PALETTE = [[128, 64, 128], [0, 0, 142], [70, 130, 180], [107, 142, 35], [220, 20, 60]]


@pytest.fixture(scope="module")
def one_thread():
    """Small inputs run faster on one thread, and do not stall when other jobs share the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def lively(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights with BatchNorm statistics taken from noise: outputs vary over the image, as a
    trained network's do (fresh BN statistics give almost constant probabilities)."""
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration pass
    with torch.no_grad():
        model.train()(torch.randn(2, 3, 64, 80))
    return model.eval()
