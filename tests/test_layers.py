"""The floor plan holds: import-linter's layer contract in pyproject.toml is kept, and an import
that runs up the layers breaks it."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports())"

pytest.importorskip("importlinter")


def lint(tree: Path) -> subprocess.CompletedProcess:
    """Run import-linter on the sceneparse package under `tree` (its own pyproject.toml)."""
    return subprocess.run([sys.executable, "-c", LINT], cwd=tree, capture_output=True, text=True, timeout=300)


def copy_tree(dest: Path) -> Path:
    shutil.copy(ROOT / "pyproject.toml", dest)
    shutil.copytree(ROOT / "sceneparse", dest / "sceneparse", ignore=shutil.ignore_patterns(
        "samples", "weights", "__pycache__"))
    return dest


def test_layer_contract_is_kept(tmp_path):
    result = lint(copy_tree(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


@pytest.mark.parametrize("module, upward", [
    ("utils.py", "from sceneparse.checkpoint import load_checkpoint"),
    ("models/dabnet.py", "from sceneparse.inference import Segmenter"),
    ("inference.py", "from sceneparse.export import export_onnx"),
    ("evaluate.py", "import sceneparse.training.loop"),
    ("training/loop.py", "from sceneparse.cli import main"),
])
def test_an_upward_import_breaks_the_contract(tmp_path, module, upward):
    tree = copy_tree(tmp_path)
    path = tree / "sceneparse" / module
    path.write_text(path.read_text() + f"\n{upward}  # the upward import under test\n")
    result = lint(tree)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and upward.split()[1] in result.stdout
