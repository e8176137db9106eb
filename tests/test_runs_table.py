"""tools/runs_table.py: the README's table of training runs, from run folders."""
import subprocess
import sys
from pathlib import Path

import yaml

from sceneparse.training.runlog import LOG_FIELDS

TOOL = Path(__file__).resolve().parents[1] / "tools" / "runs_table.py"


def make_run(folder: Path, config: dict, rows: list[dict]) -> Path:
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    lines = [",".join(LOG_FIELDS)] + [",".join(str(r.get(k, "")) for k in LOG_FIELDS) for r in rows]
    (folder / "log.csv").write_text("\n".join(lines) + "\n")
    return folder


def run_tool(*folders: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *map(str, folders)], capture_output=True, text=True)


def test_table_lists_changes_clock_and_final_miou(tmp_path):
    base = {"model": "dabnet", "lr": 0.002, "iterations": 20, "root": "/a"}
    ref = make_run(tmp_path / "ref", base, [
        {"iteration": 10, "epoch": 0, "loss": 1.5, "elapsed_s": 60},
        {"iteration": 10, "elapsed_s": 70, "val_miou": 0.25},
        {"iteration": 20, "elapsed_s": 150, "val_miou": 0.5, "val_pixel_acc": 0.9, "val_mean_class_acc": 0.625}])
    sgd = make_run(tmp_path / "sgd", {**base, "lr": 0.05, "optimizer": "adamw", "root": "/b"}, [
        {"iteration": 20, "elapsed_s": 300, "val_miou": 0.45}])
    running = make_run(tmp_path / "running", {**base, "iterations": 40}, [
        {"iteration": 30, "elapsed_s": 240, "val_miou": 0.6}])
    result = run_tool(ref, sgd, running)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[2] == "| ref | (reference) | 20 | 2 | 10: 0.250, 20: 0.500 | 0.5000 | +0.000 | 0.9000 | 0.6250 |"
    # root differs too but is not a change in what is learned
    assert lines[3] == "| sgd | lr=0.05, optimizer=adamw | 20 | 5 | 20: 0.450 | 0.4500 | -0.050 |  |  |"
    # an unfinished run has no final number
    assert lines[4] == "| running | iterations=40 | 30/40 (training) | 4 | 30: 0.600 |  |  |  |  |"


def test_not_a_run_folder_is_a_one_line_error(tmp_path):
    result = run_tool(tmp_path)
    assert result.returncode != 0
    assert result.stderr.strip() == f"{tmp_path / 'config.yaml'}: not found (is {tmp_path} a training run's --out folder?)"
