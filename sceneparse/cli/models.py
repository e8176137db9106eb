"""`sceneparse models`: the zoo with parameters and GFLOPs, and the built-in trained models."""
from __future__ import annotations

import argparse

import torch

from sceneparse import checkpoint
from sceneparse.cli.options import add_command, parse_size
from sceneparse.models import build_model, count_flops, list_models
from sceneparse.utils import SceneparseError


def add_parser(sub) -> None:
    p = add_command(sub, "models", "list the model zoo and the built-in trained models",
                    "sceneparse models --size 360x480 --num-classes 11")
    p.add_argument("--size", default="512x1024", metavar="HxW", help="input size for the GFLOP column")
    p.add_argument("--num-classes", type=int, default=19, help="classes of the networks counted")
    p.set_defaults(run=run)


def count(name: str, num_classes: int, size: tuple[int, int]) -> tuple[int, float]:
    """(parameters, forward GFLOPs at batch 1 in eval mode), on the meta device: no memory, no compute."""
    with torch.device("meta"):
        model = build_model(name, num_classes).eval()
        x = torch.empty(1, 3, *size)
    return sum(p.numel() for p in model.parameters()), count_flops(model, x) / 1e9


def run(args: argparse.Namespace) -> int:
    size = parse_size(args.size, "--size", minimum=32)
    if args.num_classes < 1:
        raise SceneparseError(f"--num-classes must be positive, got {args.num_classes}")
    print(f"Model zoo ({args.num_classes} classes; GFLOPs: one {size[0]}x{size[1]} image, eval-mode forward, "
          f"convolutions and matrix products counted by torch.utils.flop_counter, 1 multiply-add = 2 FLOPs)")
    print("params include PSPNet's auxiliary head, which runs only in training")
    print(f"{'name':<18} {'params':>12} {'GFLOPs':>10}")
    for name in list_models():
        params, gflops = count(name, args.num_classes, size)
        print(f"{name:<18} {params:>12,} {gflops:>10.1f}")

    folder = checkpoint.WEIGHTS_DIR
    shipped = [name for name, file in checkpoint.BUILTIN.items() if (folder / file).is_file()]
    print("\nBuilt-in trained models" + ("" if shipped else f": none shipped in this version ({folder})"))
    if shipped:
        print(f"{'name':<12} {'model':<12} {'classes':>7}  {'scored on':<34} {'mIoU':>6} {'pixel acc':>9}")
    for name in shipped:
        ckpt = checkpoint.load_checkpoint(name)
        metrics = ckpt.get("metrics", {})
        setup = metrics.get("setup", {})
        scored = f"{setup.get('dataset', '?')} {setup.get('split', '?')}" if setup else "-"
        print(f"{name:<12} {ckpt['model']['name']:<12} {ckpt['model']['num_classes']:>7}  {scored:<34} "
              f"{_fraction(metrics.get('miou')):>6} {_fraction(metrics.get('pixel_acc')):>9}")
        if "categories" in metrics:
            print(f"{'':<12} {'':<12} {'':>7}  {scored + ', categories':<34} "
                  f"{_fraction(metrics['categories']['miou']):>6} {_fraction(metrics['categories']['pixel_acc']):>9}")
    if shipped:
        print("(single scale, whole image; `sceneparse evaluate --checkpoint NAME ...` reprints them)")
    return 0


def _fraction(value) -> str:
    return "-" if value is None else f"{value:.4f}"
