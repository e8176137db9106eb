"""Inference speed of the model zoo on every engine: JSON lines on stdout and a markdown table.

    .venv/bin/python benchmarks/zoo_inference.py --size 512x1024 --out benchmarks/results/zoo_inference.md
    .venv/bin/python benchmarks/zoo_inference.py --models dabnet_psp,pspnet_resnet18 --engines torch,onnxruntime
    .venv/bin/python benchmarks/zoo_inference.py --models dabnet,dabnet:activation=relu --size 360x480

For each network (random weights, 19 classes, batch 1) every engine is prepared first (export,
quantization, compilation), then the engines and a 2048^3 fp32 matmul take turns, one timed run
each per round: a machine shared with other work then slows all of them alike, so the ratios
within a network are fair even when the absolute numbers are not. The fp32 peak is the best
matmul of the rounds. Memory is not measured here (one process holds every engine): use
`sceneparse benchmark --engine E` for the peak RSS of one engine.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from model_spec import parse_model
from sceneparse.benchmark import ENGINES, environment, matmul_seconds, prepare, random_metadata, summarize
from sceneparse.models import count_flops
from sceneparse.cli.options import parse_size
from sceneparse.models import build_model, list_models
from sceneparse.runtime import openvino_capabilities
from sceneparse.utils import atomic_path


def measure(spec: str, engines: list[str], size: tuple[int, int], runs: int, warmup: int, num_classes: int) -> list:
    name, options = parse_model(spec)
    torch.manual_seed(0)
    model = build_model(name, num_classes, **options).eval()
    x = torch.randn(1, 3, *size)
    flops = count_flops(model, x)
    load = os.getloadavg()[0]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        runners, setup = {}, {}
        for engine in engines:
            start = time.perf_counter()
            runners[engine] = prepare(engine, model, x, random_metadata(name, num_classes), Path(tmp))
            setup[engine] = time.perf_counter() - start
        for _ in range(warmup):
            for run in runners.values():
                run(x)
        times = {engine: [] for engine in engines}
        matmul = float("inf")
        for _ in range(runs):
            for engine, run in runners.items():
                start = time.perf_counter()
                run(x)
                times[engine].append(time.perf_counter() - start)
            matmul = min(matmul, matmul_seconds(repeats=3))
    peak = 2 * 2048 ** 3 / matmul / 1e9
    for engine in engines:
        results.append({"model": spec, "engine": engine, "size": list(size), "batch_size": 1,
                        "threads": torch.get_num_threads(), "gflop": round(flops / 1e9, 2),
                        **summarize(times[engine], flops, peak, 1), "setup_s": round(setup[engine], 1),
                        "runs": runs, "warmup": warmup, "interleaved": True,
                        "load_average": [round(load, 2), round(os.getloadavg()[0], 2)], **environment()})
    return results


def table(results: list[dict]) -> str:
    """One row per network, one column per engine: median ms and the speed-up over eager torch."""
    engines = list(dict.fromkeys(r["engine"] for r in results))
    lines = ["| model | GFLOP | " + " | ".join(engines) + " |", "|---|---:|" + "---:|" * len(engines)]
    for model in dict.fromkeys(r["model"] for r in results):
        rows = {r["engine"]: r for r in results if r["model"] == model}
        eager = rows.get("torch", {}).get("latency_ms", {}).get("median")
        cells = []
        for engine in engines:
            ms = rows[engine]["latency_ms"]["median"] if engine in rows else None
            cells.append("" if ms is None else f"{ms} ({eager / ms:.2f}x)" if eager else f"{ms}")
        first = next(iter(rows.values()))
        lines.append(f"| {model} | {first['gflop']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(list_models()),
                        help="comma-separated zoo names, each with optional model options: dabnet:activation=relu")
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--size", default="512x1024")
    parser.add_argument("--num-classes", type=int, default=19)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=None, help="markdown file for the table")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    size = parse_size(args.size)
    engines = args.engines.split(",")
    if "openvino-bf16" in engines and "BF16" not in openvino_capabilities():
        engines.remove("openvino-bf16")
        print("openvino-bf16 left out: this CPU has no native bf16", file=sys.stderr)
    results = []
    for name in args.models.split(","):
        for r in measure(name, engines, size, args.runs, args.warmup, args.num_classes):
            print(json.dumps(r), flush=True)
            results.append(r)
    env = results[0]
    text = (f"{env['cpu']} ({', '.join(env['cpu_flags']) or 'no AVX-512/AMX flags'}), {env['threads']} threads; "
            f"batch 1, {size[0]}x{size[1]}, {args.num_classes} classes, random weights; torch {env['torch']}, onnxruntime "
            f"{env['onnxruntime']}, openvino {env['openvino']}. Median ms of {args.runs} interleaved rounds, and in "
            f"brackets the speed-up over eager torch in the same rounds (load average at the start: "
            f"{env['load_average'][0]}).\n\n{table(results)}\n")
    print(text, file=sys.stderr)
    if args.out:
        with atomic_path(args.out) as tmp:
            tmp.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
