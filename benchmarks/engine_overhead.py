"""What the training engine costs: `sceneparse train` against a plain PyTorch loop, in one run.

Both train the same model on the same batches size with the same optimiser; the plain loop reuses
one batch held in memory (no data loading at all), the engine reads, augments and logs as usual.
The ratio engine/plain is the number to read; absolute speeds depend on the machine's load.

    python benchmarks/engine_overhead.py --model pspnet_lite --options '{width: 16}' --iterations 20
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn
import yaml

from sceneparse.data import build_dataset
from sceneparse.data.transforms import train_transform
from sceneparse.training.config import TrainConfig
from sceneparse.training import train
from sceneparse.models import build_model

SAMPLES = Path(__file__).resolve().parent.parent / "sceneparse" / "samples" / "camvid"


def plain_loop(cfg: TrainConfig, iterations: int) -> float:
    """Iterations per second of forward + loss + backward + SGD on one fixed batch."""
    torch.manual_seed(cfg.seed)
    ds = build_dataset(cfg.dataset, cfg.root, cfg.train_split,
                       transform=train_transform(crop_size=tuple(cfg.crop_size), scale=tuple(cfg.scale)))
    items = [ds[i % len(ds)] for i in range(cfg.batch_size)]
    images = torch.stack([x for x, _ in items])
    masks = torch.stack([y for _, y in items])
    model = build_model(cfg.model, len(ds.classes), **cfg.model_options).train()
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    criterion = nn.CrossEntropyLoss(ignore_index=255)

    def step():
        opt.zero_grad(set_to_none=True)
        out = model(images)
        loss = criterion(out[0], masks) + 0.4 * criterion(out[1], masks) if isinstance(out, tuple) \
            else criterion(out, masks)
        loss.backward()
        opt.step()

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(iterations):
        step()
    return iterations / (time.perf_counter() - start)


def engine_loop(cfg: TrainConfig, iterations: int) -> float:
    """Iterations per second of `train()` over the same number of steps, setup excluded."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg.iterations = iterations + 1
        cfg.log_interval = 1
        train(cfg, Path(tmp) / "run")
        rows = list(csv_rows(Path(tmp) / "run" / "log.csv"))
    # elapsed_s at iteration 1 includes setup and warm-up; measure from there to the end.
    t0, t1 = rows[0]["elapsed_s"], rows[-1]["elapsed_s"]
    return (len(rows) - 1) / (t1 - t0)


def csv_rows(path: Path):
    import csv

    with path.open() as f:
        for row in csv.DictReader(f):
            if row["loss"]:
                yield {k: float(v) for k, v in row.items() if v}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="pspnet_lite")
    p.add_argument("--options", default="{width: 16}", help="model options as YAML")
    p.add_argument("--root", default=str(SAMPLES))
    p.add_argument("--crop", default="120x160")
    p.add_argument("--batch-size", type=int, default=3)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--iterations", type=int, default=20)
    args = p.parse_args()
    h, w = (int(v) for v in args.crop.split("x"))
    cfg = TrainConfig(model=args.model, model_options=yaml.safe_load(args.options) or {}, dataset="camvid",
                      root=args.root, val_split="", crop_size=[h, w], scale=[0.75, 1.25],
                      batch_size=args.batch_size, workers=args.workers, iterations=1, lr=0.01)
    plain = plain_loop(cfg, args.iterations)
    engine = engine_loop(cfg, args.iterations)
    plain_again = plain_loop(cfg, args.iterations)  # bracket the engine run: load changes over time
    print(json.dumps({"model": args.model, "options": cfg.model_options, "crop": [h, w],
                      "batch_size": args.batch_size, "workers": args.workers, "iterations": args.iterations,
                      "threads": torch.get_num_threads(), "plain_it_s": [round(plain, 4), round(plain_again, 4)],
                      "engine_it_s": round(engine, 4),
                      "engine_over_plain": round(engine / ((plain + plain_again) / 2), 4)}))


if __name__ == "__main__":
    main()
