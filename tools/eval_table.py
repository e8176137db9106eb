"""A markdown table of per-class IoU for the README, classes as rows, from `sceneparse evaluate` folders.

    python tools/eval_table.py ~/runs/cityscapes_pairs_dabnet_val_classes \
        ~/runs/cityscapes_pairs_pspnet_resnet18_val_classes --names dabnet,pspnet_resnet18

Each folder is an evaluation's --out folder (its metrics.json); all must score the same classes.
A class absent from the ground truth and never predicted (IoU undefined) shows as "-".
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def load_metrics(folder: Path) -> dict:
    path = folder / "metrics.json"
    try:
        metrics = json.loads(path.read_text())
    except FileNotFoundError:
        raise SystemExit(f"{path}: not found (is {folder} a `sceneparse evaluate --out` folder?)") from None
    except json.JSONDecodeError as e:
        raise SystemExit(f"{path}: not an evaluation's metrics.json ({e})") from None
    if not isinstance(metrics, dict) or not {"per_class", "miou"} <= metrics.keys():
        raise SystemExit(f"{path}: not an evaluation's metrics.json (no per_class and miou)")
    return metrics


def table(metrics: list[dict], names: list[str]) -> str:
    classes = list(metrics[0]["per_class"])
    for m, name in zip(metrics, names, strict=True):
        if list(m["per_class"]) != classes:
            raise SystemExit(f"{name}: scores classes {list(m['per_class'])[:3]}..., the first folder "
                             f"{classes[:3]}...: evaluate them with the same --label-set")
    lines = ["| class | " + " | ".join(f"`{n}`" for n in names) + " |", "|---|" + "---:|" * len(names)]
    for c in classes:
        cells = [m["per_class"][c]["iou"] for m in metrics]
        lines.append(f"| {c} | " + " | ".join("-" if v is None else f"{v:.3f}" for v in cells) + " |")
    lines.append("| **mIoU** | " + " | ".join(f"**{m['miou']:.3f}**" for m in metrics) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="`sceneparse evaluate --out` folders")
    parser.add_argument("--names", help="comma-separated column names (default: the folder names)")
    args = parser.parse_args()
    names = args.names.split(",") if args.names else [f.name for f in args.folders]
    if len(names) != len(args.folders):
        raise SystemExit(f"--names: {len(names)} names for {len(args.folders)} folders")
    print(table([load_metrics(f) for f in args.folders], names))


if __name__ == "__main__":
    main()
