"""A markdown table of training runs for the README: what each run changed, its clock and val scores.

    python tools/runs_table.py ~/runs/ablation_base ~/runs/ablation_*

The first folder is the reference: "changes" lists the settings (each folder's config.yaml) whose
values differ from it; a setting missing from an older run's config.yaml counts as its default.
"wall" is the run's own clock (log.csv's elapsed_s, carried over by --resume), so it includes
whatever else the machine was doing. A run still training shows the iteration it has reached.
"vs ref" is the final val mIoU minus the reference's; pixel and class acc are the final evaluation's.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sceneparse.training.config import TrainConfig, as_dict  # noqa: E402
from sceneparse.training.runlog import read_log  # noqa: E402

# settings that do not change what is learned
IGNORED = {"root", "workers", "checkpoint_minutes", "log_interval", "device", "eval_interval"}


def load_run(folder: Path) -> dict:
    """config (dict), evaluations [(iteration, val mIoU, pixel acc, class acc)], last iteration and minutes."""
    config_path, log_path = folder / "config.yaml", folder / "log.csv"
    for path in (config_path, log_path):
        if not path.is_file():
            raise SystemExit(f"{path}: not found (is {folder} a training run's --out folder?)")
    try:
        config = {**as_dict(TrainConfig()), **(yaml.safe_load(config_path.read_text()) or {})}
        rows = read_log(log_path)
    except (yaml.YAMLError, ValueError, KeyError) as e:
        raise SystemExit(f"{folder}: unreadable config.yaml or log.csv ({e})") from None
    evals = [(r["iteration"], r["val_miou"], r.get("val_pixel_acc"), r.get("val_mean_class_acc"))
             for r in rows if r.get("val_miou") is not None]
    return {"name": folder.name, "config": config, "evals": evals,
            "iteration": max((r["iteration"] for r in rows), default=0),
            "minutes": max((r["elapsed_s"] or 0 for r in rows), default=0) / 60}


def changes(config: dict, reference: dict) -> str:
    keys = sorted(k for k in set(config) | set(reference) if k not in IGNORED and config.get(k) != reference.get(k))
    return ", ".join(f"{k}={yaml.safe_dump(config.get(k), default_flow_style=True).strip()}"
                     .replace("\n...", "") for k in keys) or "(reference)"


def table(runs: list[dict]) -> str:
    reference = runs[0]
    ref_final = reference["evals"][-1][1] if reference["evals"] else None
    lines = ["| run | changes | iterations | wall (min) | val mIoU per evaluation | final val mIoU | vs ref "
             "| pixel acc | class acc |", "|---|---|---:|---:|---|---:|---:|---:|---:|"]
    for run in runs:
        total = run["config"].get("iterations") or 0  # 0: set by epochs, unknown here
        done = run["iteration"] >= total
        iterations = f"{run['iteration']}" if done else f"{run['iteration']}/{total} (training)"
        evals = ", ".join(f"{i}: {m:.3f}" for i, m, _, _ in run["evals"])
        final = run["evals"][-1] if run["evals"] and done else (None,) * 4
        delta = f"{final[1] - ref_final:+.3f}" if final[1] is not None and ref_final is not None else ""
        scores = [f"{x:.4f}" if x is not None else "" for x in final[1:]]
        lines.append(f"| {run['name']} | {changes(run['config'], reference['config'])} | {iterations} | "
                     f"{run['minutes']:.0f} | {evals} | {scores[0]} | {delta} | {scores[1]} | {scores[2]} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="training --out folders; the first is the reference")
    args = parser.parse_args()
    print(table([load_run(folder) for folder in args.runs]))


if __name__ == "__main__":
    main()
