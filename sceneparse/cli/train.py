"""`sceneparse train`: train a model from a YAML config (see docs/training.md)."""
from __future__ import annotations

import argparse
from pathlib import Path

from sceneparse.cli.options import add_command
from sceneparse.training import load_config, train


def add_parser(sub) -> None:
    p = add_command(sub, "train", "train a model from a YAML config",
                    "sceneparse train configs/camvid_dabnet_quick.yaml --out ~/runs/quick --set lr=0.001")
    p.add_argument("config", help="YAML file of training settings (see configs/)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (value in YAML, e.g. crop_size=[256,256]); repeatable")
    p.add_argument("--out", default=None, help="output folder (default runs/<config name>)")
    p.add_argument("--resume", default=None, metavar="PATH|auto",
                   help="continue exactly from a last.pt (auto: OUT/last.pt if it exists)")
    p.add_argument("--overwrite", action="store_true",
                   help="start over in an OUT that already holds a run (its checkpoints and logs are removed); "
                        "without it, or --resume, such a folder is refused")
    p.add_argument("--stop-after", type=int, default=None, metavar="ITER",
                   help="write last.pt and stop at this iteration, exit code 0 (continue later with --resume)")
    p.add_argument("--time-limit", type=float, default=None, metavar="MINUTES",
                   help="write last.pt and stop after this many minutes, exit code 0")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.set)
    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    result = train(cfg, out, resume=args.resume, stop_after=args.stop_after, time_limit=args.time_limit,
                   overwrite=args.overwrite)
    # stopped as asked (--stop-after, --time-limit): 0; by SIGINT/SIGTERM: 130, the shell's code
    return 130 if result.get("interrupted") and result.get("stopped_by") == "signal" else 0
