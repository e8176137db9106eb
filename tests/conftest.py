from pathlib import Path

import pytest

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
