"""`sceneparse weights fetch`: download torchvision's ImageNet backbone weights, on request only."""
from __future__ import annotations

import argparse

from sceneparse.models.weights import IMAGENET, fetch


def add_parser(sub) -> None:
    p = sub.add_parser("weights", help="ImageNet backbone weights (explicit download)",
                       description="ImageNet backbone weights: nothing downloads unless asked for here.")
    s = p.add_subparsers(dest="weights_cmd", required=True)
    f = s.add_parser("fetch", help="download torchvision's ImageNet weights and verify the checksum",
                     epilog="example:\n  sceneparse weights fetch resnet50",
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    f.add_argument("name", help="|".join(IMAGENET))
    f.add_argument("--cache", default=None, help="folder (default ~/.cache/sceneparse, or $SCENEPARSE_CACHE)")
    f.add_argument("--url", default=None, help="override the download URL (mirrors, tests)")
    f.set_defaults(run=run_fetch)


def run_fetch(args: argparse.Namespace) -> int:
    path = fetch(args.name, args.cache, args.url)
    print(f"{args.name}: {path} (sha256 {IMAGENET[args.name].sha256}... verified)")
    return 0
