"""Inference latency, throughput, FLOPs, share of the CPU's peak, memory.

One run measures, in this order and in the same process:

1. FLOPs of one forward pass of the eager fp32 network (torch.utils.flop_counter; a multiply-add
   counts 2). The same count is used for every engine, so int8 "GFLOP/s" means fp32-equivalent work.
2. The engine is prepared and run once (torch.compile, ONNX export (+ int8 quantization), or
   OpenVINO conversion (+ NNCF int8 quantization) into a temporary folder); `setup_s` is how long
   that took.
3. This machine's fp32 peak: the best of several 2048^3 float32 matmuls with the same threads.
4. `--warmup` more untimed runs, then `--runs` timed runs of one random batch: median and p90
   latency, images/s, achieved GFLOP/s and its percentage of the measured peak.
5. Peak resident memory of the process during the timed runs (on Linux the peak is reset before
   them; elsewhere it is the lifetime peak, see `rss_scope`).

Engines: `torch` is what `Segmenter` runs (eager, inference mode, channels_last); `torch-compile`
the same through torch.compile (inductor, weights frozen); `onnxruntime` a fixed-size fp32 ONNX
export with all graph optimisations; `onnxruntime-int8` that export quantized (QDQ, per-channel;
calibrated on `--calibration` images, default the bundled demo photo: speed does not depend on them);
`openvino` the network converted to OpenVINO and compiled for the input size, in f32 (exact),
`openvino-bf16` the same computing in bf16, `openvino-int8` quantized by NNCF on the calibration images.
The load average is recorded: on a shared machine compare numbers only within one run.

With an evaluation set (`eval_root`, `eval_split`), `accuracy` scores the engine and eager torch
f32 on it (each image resized to the benchmark size for the network, as `--resize` does) and
reports both mIoUs, their difference and the share of pixels whose labels agree.
"""
from __future__ import annotations

import importlib.metadata
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from sceneparse.checkpoint import load_checkpoint, model_from_checkpoint
from sceneparse.data import build_dataset
from sceneparse.data.transforms import eval_transform
from sceneparse.evaluate import evaluate_model
from sceneparse.export import export_onnx, quantize_int8
from sceneparse.models import build_model, count_flops
from sceneparse.runtime import OrtEngine, OvEngine, calibration_arrays, calibration_images_in, checkpoint_metadata
from sceneparse.utils import IMAGENET_MEAN, IMAGENET_STD, SceneparseError, check_threads, cpu_flags, cpu_name, peak_rss_mb

ENGINES = ("torch", "torch-compile", "onnxruntime", "onnxruntime-int8", "openvino", "openvino-bf16", "openvino-int8")
SAMPLES = Path(__file__).resolve().parent / "samples" / "demo"  # photos only (no label images)


def matmul_seconds(n: int = 2048, repeats: int = 5) -> float:
    """Best time of an n x n fp32 matmul with the current torch threads (2 n^3 FLOPs)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return best


def peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    """This machine's measured fp32 peak: GFLOP/s of the best n^3 matmul."""
    return 2 * n ** 3 / matmul_seconds(n, repeats) / 1e9


def load_model(checkpoint: str | os.PathLike | None = None, model: str | None = None,
               num_classes: int = 19) -> tuple[torch.nn.Module, str, dict]:
    """The eval network, its name and the metadata an export needs: from a checkpoint (path or
    built-in name), else the zoo network `model` with random weights (default pspnet_resnet18)."""
    if checkpoint:
        ckpt = load_checkpoint(checkpoint)
        return model_from_checkpoint(ckpt), ckpt["model"]["name"], checkpoint_metadata(ckpt)
    name = model or "pspnet_resnet18"
    return build_model(name, num_classes).eval(), name, random_metadata(name, num_classes)


def random_metadata(name: str, num_classes: int) -> dict:
    """Export metadata for a network with random weights (classes named by their index)."""
    return {"model": name, "num_classes": num_classes, "classes": [str(i) for i in range(num_classes)],
            "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}


def prepare(engine: str, model: torch.nn.Module, x: torch.Tensor, metadata: dict, workdir: Path,
            threads: int | None = None, calibration: str | os.PathLike | None = None,
            calibration_images: int = 16) -> Callable[[torch.Tensor], torch.Tensor]:
    """A callable images -> logits for `engine`, already run once on `x` (compiles, loads).

    The ONNX engines export to `workdir`/fp32.onnx, or reuse it when it is there (same model and size).
    """
    if engine not in ENGINES:
        raise SceneparseError(f"unknown engine '{engine}' (valid: {', '.join(ENGINES)})")
    if engine in ("torch", "torch-compile"):
        model = model.to(memory_format=torch.channels_last)
        if engine == "torch-compile":
            import torch._inductor.config as inductor_config

            inductor_config.freezing = True  # fold the weights into the graph: the inference setting
            model = torch.compile(model)

        def run(images: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                return model(images.contiguous(memory_format=torch.channels_last))
    elif engine.startswith("openvino"):
        precision = engine.partition("-")[2] or "f32"
        arrays = []
        if precision == "int8":
            files = calibration_images_in(calibration or SAMPLES, calibration_images)
            arrays = calibration_arrays(files, metadata["mean"], metadata["std"], tuple(x.shape[-2:]))
        run = OvEngine.from_module(model, metadata, precision, threads, arrays, cache=workdir)
    else:
        path = workdir / "fp32.onnx"
        if not path.is_file():
            export_onnx(model, path, tuple(x.shape[-2:]), metadata, check=False)
        if engine == "onnxruntime-int8":
            files = calibration_images_in(calibration or SAMPLES, calibration_images)
            quantize_int8(path, workdir / "int8.onnx", files)
            path = workdir / "int8.onnx"
        run = OrtEngine(path, threads=threads)
    run(x)
    return run


def time_runs(run: Callable, x: torch.Tensor, runs: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        run(x)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - start)
    return times


def summarize(times: list[float], flops: int, peak: float, batch_size: int) -> dict:
    """Latency statistics, throughput and achieved GFLOP/s (and % of `peak`) of timed runs."""
    median = float(np.median(times))
    achieved = flops / median / 1e9
    return {"latency_ms": {"median": round(median * 1e3, 1), "p90": round(float(np.percentile(times, 90)) * 1e3, 1),
                           "min": round(min(times) * 1e3, 1)},
            "images_per_s": round(batch_size / median, 3), "gflops_achieved": round(achieved, 1),
            "peak_gflops_fp32": round(peak, 1), "percent_of_peak": round(100 * achieved / peak, 1)}


def environment() -> dict:
    versions = {}
    for package in ("onnxruntime", "openvino"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {"cpu": cpu_name(), "cpu_flags": cpu_flags(), "cores": os.cpu_count(), "torch": torch.__version__,
            **versions}


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_mb(reset: bool) -> float:
    if reset:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return peak_rss_mb()


def benchmark(model: torch.nn.Module, name: str, metadata: dict, size: tuple[int, int], engine: str = "torch",
              threads: int | None = None, batch_size: int = 1, runs: int = 10, warmup: int = 2,
              calibration: str | None = None, eval_root: str | os.PathLike | None = None,
              eval_split: str = "test", eval_limit: int | None = None) -> dict:
    """Measure one (network, engine, size); see the module docstring for what each number means."""
    if runs < 1 or warmup < 0 or batch_size < 1:
        raise SceneparseError("--runs and --batch-size must be at least 1, --warmup at least 0")
    check_threads(threads)
    if threads:
        torch.set_num_threads(threads)
    load_before = os.getloadavg()[0]
    x = torch.randn(batch_size, 3, *size, generator=torch.Generator().manual_seed(0))
    flops = count_flops(model, x)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        run = prepare(engine, model, x, metadata, Path(tmp), threads, calibration)
        setup = time.perf_counter() - start
        peak = peak_gflops()
        reset = _reset_peak_rss()
        times = time_runs(run, x, runs, warmup)
        rss = _peak_rss_mb(reset)
        scores = accuracy(run, model, metadata, size, eval_root, eval_split, eval_limit) if eval_root else None
    return {"model": name, "engine": engine, "size": list(size), "batch_size": batch_size,
            "threads": threads or torch.get_num_threads(), "gflop": round(flops / 1e9, 2),
            **summarize(times, flops, peak, batch_size),
            "peak_rss_mb": round(rss, 1), "rss_scope": "timed runs" if reset else "process lifetime",
            "setup_s": round(setup, 1), "runs": runs, "warmup": warmup,
            "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)], **environment(),
            **({"accuracy": scores} if scores else {})}


def accuracy(run: Callable, model: torch.nn.Module, metadata: dict, size: tuple[int, int],
             root: str | os.PathLike, split: str = "test", limit: int | None = None) -> dict:
    """mIoU of `run` and of eager torch f32 on a real evaluation set (images resized to `size` for
    the network), their difference, and the share of pixels where the two give the same label."""
    if limit is not None and limit < 1:
        raise SceneparseError(f"--eval-limit {limit}: must be at least 1")
    if not metadata.get("dataset"):
        raise SceneparseError("--eval-root needs a trained --checkpoint (a zoo --model has random weights)")
    options = {"label_set": metadata["label_set"]} if metadata.get("label_set") else {}
    data = build_dataset(metadata["dataset"], root, split,
                         transform=eval_transform(mean=metadata["mean"], std=metadata["std"]), **options)
    preds: dict[str, list] = {"engine": [], "torch": []}
    scores = {}
    for key, net in (("engine", run), ("torch", model)):
        result = evaluate_model(net, data, class_names=metadata["classes"], resize=size, limit=limit,
                                on_prediction=lambda i, pred, target, key=key: preds[key].append(pred.to(torch.uint8)))
        scores[key] = result["miou"]
    agree = sum(int((a == b).sum()) for a, b in zip(preds["engine"], preds["torch"]))
    total = sum(a.numel() for a in preds["torch"])
    return {"dataset": metadata["dataset"], "split": split, "images": len(preds["torch"]),
            "miou": round(scores["engine"], 4), "miou_torch_f32": round(scores["torch"], 4),
            "miou_delta": round(scores["engine"] - scores["torch"], 4), "label_agreement": round(agree / total, 5)}


def format_result(r: dict) -> str:
    lat = r["latency_ms"]
    return (f"{r['model']} {r['engine']} {r['size'][0]}x{r['size'][1]} batch {r['batch_size']}, "
            f"{r['threads']} threads: median {lat['median']} ms, p90 {lat['p90']} ms, {r['images_per_s']} img/s, "
            f"{r['gflop']} GFLOP -> {r['gflops_achieved']} GFLOP/s = {r['percent_of_peak']}% of the measured "
            f"fp32 peak {r['peak_gflops_fp32']} GFLOP/s; peak RSS {r['peak_rss_mb']} MB; setup {r['setup_s']} s; "
            f"load average {r['load_average'][0]} -> {r['load_average'][1]}"
            + (f"; {a['dataset']} {a['split']} ({a['images']} images) mIoU {a['miou']} vs torch f32 "
               f"{a['miou_torch_f32']} (delta {a['miou_delta']:+.4f}, labels agree on {100 * a['label_agreement']:.2f}%)"
               if (a := r.get("accuracy")) else ""))
