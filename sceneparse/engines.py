"""What runs a network: torch, onnxruntime or OpenVINO, by name, or `auto`, the fastest exact one.

`load_network` turns a checkpoint (or an exported file) and an engine name into something that maps
a float tensor (B, 3, h, w) to logits: a torch model in eval mode, `OrtEngine` or `OvEngine`.
`choose_engine` is `auto`: it measures the exact engines installed, once per machine and network.
"""
from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path
from typing import Callable

import torch

from sceneparse.checkpoint import model_from_checkpoint
from sceneparse.models.weights import default_cache
from sceneparse.runtime import (OV_PRECISIONS, OrtEngine, OvEngine, calibration_arrays, calibration_images_in,
                                checkpoint_metadata, weights_key)
from sceneparse.utils import SceneparseError, atomic_path, check_threads, cpu_name

Model = Callable[[torch.Tensor], torch.Tensor]
ENGINES = ("auto", "torch", "onnxruntime", "openvino")
AUTO_SIZE = (360, 480)  # engine=auto measures at the model's photo size, else this (a CamVid frame)
CALIBRATION_IMAGES = 32  # int8: images spread over the --calibration folder
CHOICE_VERSION = "v2"  # engines.json keys; v1 timed torch on NCHW input, slower than predict gives it


def load_network(ckpt: dict | None, engine: str = "torch", model_file: str | os.PathLike | None = None,
                 threads: int | None = None, precision: str = "f32",
                 calibration: str | os.PathLike | None = None, device: torch.device | str = "cpu") -> tuple[Model, str]:
    """The network that runs a checkpoint (or an exported file), and what runs it, e.g. "openvino f32".

    torch runs the checkpoint (channels_last on CPU); onnxruntime an exported .onnx `model_file`;
    openvino the file, else the checkpoint converted on the fly (cached, see `OvEngine.from_module`);
    auto the fastest exact engine, measured (`choose_engine`). bf16 and int8 run in OpenVINO; int8
    from a checkpoint is calibrated on images of the `calibration` folder (training photos).
    """
    check_threads(threads)
    if engine not in ENGINES:
        raise SceneparseError(f"unknown engine '{engine}' (valid: {', '.join(ENGINES)})")
    if precision not in OV_PRECISIONS:
        raise SceneparseError(f"unknown precision '{precision}' (valid: {', '.join(OV_PRECISIONS)})")
    if precision != "f32" and engine not in ("openvino", "auto"):
        raise SceneparseError(f"--precision {precision}: only --engine openvino runs {precision}")
    if engine == "auto":
        if precision != "f32":  # asked for an inexact precision by name: only OpenVINO has it
            return load_network(ckpt, "openvino", model_file, threads, precision, calibration, device)
        return choose_engine(ckpt, model_file, threads)
    if engine == "onnxruntime":
        if not model_file:
            raise SceneparseError("--engine onnxruntime needs --onnx FILE (made by `sceneparse export`)")
        return OrtEngine(model_file, threads=threads), "onnxruntime"
    if engine == "openvino":
        if model_file:
            return OvEngine.from_file(model_file, precision, threads), f"openvino {precision}"
        arrays = []
        if precision == "int8":
            if calibration is None:
                raise SceneparseError("--precision int8 needs --calibration DIR: training photos to calibrate on")
            norm = ckpt["normalization"]
            arrays = calibration_arrays(calibration_images_in(calibration, CALIBRATION_IMAGES), norm["mean"],
                                        norm["std"], ckpt["dataset"].get("photo_size"))
        net = OvEngine.from_module(model_from_checkpoint(ckpt), checkpoint_metadata(ckpt), precision, threads, arrays)
        return net, f"openvino {precision}"
    if model_file:
        raise SceneparseError(f"{model_file}: --engine torch runs a checkpoint; run a file with --engine "
                              f"onnxruntime or openvino")
    if threads:
        torch.set_num_threads(threads)
    model = model_from_checkpoint(ckpt).to(device)
    if torch.device(device).type == "cpu":
        model = model.to(memory_format=torch.channels_last)
    return model, "torch"


def network_input(model: Model, x: torch.Tensor) -> torch.Tensor:
    """`x` as `model` runs it fastest: channels_last for a torch module (measured 10-35% faster
    on this project's x86 CPUs, more with channels_last weights, which `load_network` gives it)."""
    return x.contiguous(memory_format=torch.channels_last) if isinstance(model, torch.nn.Module) else x


def choose_engine(ckpt: dict | None, model_file: str | os.PathLike | None = None,
                  threads: int | None = None, cache: str | os.PathLike | None = None) -> tuple[Model, str]:
    """The fastest exact engine for this network on this machine, loaded, and its name.

    The candidates give the same labels (f32): torch and OpenVINO f32 for a checkpoint, onnxruntime
    and OpenVINO f32 for an .onnx file (OpenVINO only where it is installed). Each runs once to warm
    up, then three times, at the model's photo size (else 360x480); the lowest median wins. The
    choice is remembered per CPU, thread count and network in `cache`/engines.json (default: the
    user's sceneparse cache), so the measurement happens once.
    """
    if model_file:
        candidates = ["openvino"] if str(model_file).lower().endswith(".xml") else ["onnxruntime", "openvino"]
    else:
        candidates = ["torch", "openvino"]
    candidates = [c for c in candidates if c == "torch" or importlib.util.find_spec(c)] or candidates
    path = Path(cache or default_cache()) / "engines.json"
    first = load_network(ckpt, candidates[0], model_file, threads)[0]
    if len(candidates) == 1:  # nothing to choose between
        return first, _engine_name(candidates[0])
    if model_file:
        stat = Path(model_file).stat()
        network = f"{Path(model_file).resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    else:
        network = weights_key(first)
    key = f"{CHOICE_VERSION}|{cpu_name()}|threads={threads or torch.get_num_threads()}|{network}"
    chosen = _read_choices(path).get(key, {}).get("engine")
    if chosen == candidates[0]:
        return first, _engine_name(chosen)
    nets = {candidates[0]: first}
    for name in candidates[1:]:
        try:
            nets[name] = load_network(ckpt, name, model_file, threads)[0]
        except SceneparseError:
            pass  # e.g. a network OpenVINO cannot convert: the first candidate still runs it
    if chosen in nets:
        return nets[chosen], _engine_name(chosen)
    if len(nets) == 1:
        return first, _engine_name(candidates[0])
    size = tuple((ckpt or {}).get("dataset", {}).get("photo_size") or AUTO_SIZE)
    fixed = getattr(first, "fixed_size", None)
    if fixed and None not in fixed:  # a file exported for one size
        size = tuple(fixed)
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0))
    times: dict[str, list[float]] = {c: [] for c in candidates}
    with torch.inference_mode():
        for name, net in nets.items():  # in blocks: one engine's idle threads spinning slow the next one down
            inp = network_input(net, x)  # what predict gives it
            net(inp)
            for _ in range(3):
                start = time.perf_counter()
                net(inp)
                times[name].append(time.perf_counter() - start)
    medians = {name: sorted(t)[1] for name, t in times.items()}
    best = min(medians, key=medians.get)
    choices = {k: v for k, v in _read_choices(path).items() if k.startswith(f"{CHOICE_VERSION}|")}
    choices[key] = {"engine": best, "ms": {name: round(m * 1e3, 1) for name, m in medians.items()},
                    "size": list(size)}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(choices, indent=1))
    except OSError:
        pass  # a read-only cache: measure again next time
    return nets[best], _engine_name(best)


def model_file_classes(model: Model, default: list) -> list:
    """The classes an exported file's metadata names (`default` for a torch model or no metadata)."""
    return list(getattr(model, "metadata", {}).get("classes", default))


def _engine_name(engine: str) -> str:
    return "openvino f32" if engine == "openvino" else engine


def _read_choices(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
