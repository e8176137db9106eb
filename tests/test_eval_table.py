"""tools/eval_table.py: the README's per-class IoU table, from evaluation folders."""
import json
import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parents[1] / "tools" / "eval_table.py"


def make_eval(folder: Path, ious: dict, miou: float) -> Path:
    folder.mkdir()
    per_class = {c: {"iou": v, "acc": None} for c, v in ious.items()}
    (folder / "metrics.json").write_text(json.dumps({"miou": miou, "per_class": per_class}))
    return folder


def run_tool(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], capture_output=True, text=True)


def test_classes_as_rows_models_as_columns(tmp_path):
    a = make_eval(tmp_path / "a", {"road": 0.9375, "sky": None}, 0.9375)
    b = make_eval(tmp_path / "b", {"road": 0.5, "sky": 0.25}, 0.375)
    out = run_tool(a, b, "--names", "first,second")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "| class | `first` | `second` |", "|---|---:|---:|",
        "| road | 0.938 | 0.500 |", "| sky | - | 0.250 |", "| **mIoU** | **0.938** | **0.375** |"]


def test_bad_folders_are_one_line_errors(tmp_path):
    a = make_eval(tmp_path / "a", {"road": 0.5}, 0.5)
    other = make_eval(tmp_path / "cat", {"flat": 0.5}, 0.5)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "metrics.json").write_text("{")
    cases = [((a, tmp_path / "missing"), "not found"), ((a, tmp_path / "broken"), "not an evaluation's"),
             ((a, other), "same --label-set"), ((a, other, "--names", "x"), "1 names for 2 folders")]
    for args, message in cases:
        out = run_tool(*args)
        assert out.returncode != 0 and message in out.stderr and "Traceback" not in out.stderr, out.stderr
