"""Cost of sliding-window inference against the sum of its windows run as whole images.

    .venv/bin/python benchmarks/slide_cost.py --model pspnet_resnet18 --size 1024x2048 --crop 512x1024

Times `infer(mode="slide")` on one image and `infer(mode="whole")` on one window-sized image,
taking turns (so a shared machine slows both alike), and prints JSON with
ratio = slide time / (number of windows x whole-window time): the overhead of cutting, batching,
softmax and accumulation; 1.0 means none. The torch engine as `Segmenter` runs it (channels_last).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

from sceneparse.cli.options import parse_size
from sceneparse.inference import default_stride, infer, window_starts
from sceneparse.models import build_model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pspnet_resnet18")
    parser.add_argument("--size", default="1024x2048")
    parser.add_argument("--crop", default="512x1024")
    parser.add_argument("--stride", default=None, help="default: two thirds of the window")
    parser.add_argument("--batch-size", type=int, default=None, help="windows per forward pass")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    size, crop = parse_size(args.size), parse_size(args.crop, "--crop")
    stride = parse_size(args.stride, "--stride") if args.stride else default_stride(crop)
    model = build_model(args.model, 19).eval().to(memory_format=torch.channels_last)
    image, window = torch.randn(1, 3, *size), torch.randn(1, 3, *crop)
    windows = len(window_starts(size[0], crop[0], stride[0])) * len(window_starts(size[1], crop[1], stride[1]))
    load = os.getloadavg()[0]
    infer(model, window)  # warm-up
    slide_times, whole_times = [], []
    for _ in range(args.rounds):
        start = time.perf_counter()
        infer(model, window)
        whole_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        infer(model, image, mode="slide", crop=crop, stride=stride, batch_size=args.batch_size)
        slide_times.append(time.perf_counter() - start)
    slide, whole = float(np.median(slide_times)), float(np.median(whole_times))
    print(json.dumps({"model": args.model, "size": list(size), "crop": list(crop), "stride": list(stride),
                      "windows": windows, "batch_size": args.batch_size, "threads": torch.get_num_threads(),
                      "slide_s": round(slide, 3), "whole_window_s": round(whole, 3),
                      "ratio": round(slide / (windows * whole), 3), "rounds": args.rounds,
                      "load_average": [round(load, 2), round(os.getloadavg()[0], 2)]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
