from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
SAMPLES = ROOT / "sceneparse" / "samples"


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
