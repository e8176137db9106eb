"""Engines besides torch, each called like a torch model in eval mode (images in, logits out):
an ONNX file in onnxruntime (`OrtEngine`), and OpenVINO (`OvEngine`) running an ONNX or IR file
or a torch network converted on the fly; and the sceneparse metadata an exported file carries.

The metadata (ONNX metadata_props, JSON values) holds what `predict` needs without a checkpoint:
classes, palette, mean, std, model, num_classes, dataset, label_set, optional photo_size, and
the export's precision and input_size.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from sceneparse.models.weights import default_cache
from sceneparse.utils import (IMAGE_SUFFIXES, SceneparseError, check_threads, cpu_name, quiet, read_image)

OV_PRECISIONS = ("f32", "bf16", "int8")


def checkpoint_metadata(ckpt: dict) -> dict:
    """The metadata an exported file carries, from a checkpoint."""
    meta = {"classes": list(ckpt["classes"]), "palette": [list(c) for c in ckpt["palette"]],
            "mean": list(ckpt["normalization"]["mean"]), "std": list(ckpt["normalization"]["std"]),
            "model": ckpt["model"]["name"], "num_classes": int(ckpt["model"]["num_classes"]),
            "dataset": ckpt["dataset"].get("name", ""), "label_set": ckpt["dataset"].get("label_set", "")}
    if ckpt["dataset"].get("photo_size"):
        meta["photo_size"] = list(ckpt["dataset"]["photo_size"])
    return meta


def write_metadata(onnx_model, metadata: dict) -> None:
    """Replace an ONNX model's metadata_props with `metadata` (JSON values)."""
    del onnx_model.metadata_props[:]
    for key, value in metadata.items():
        entry = onnx_model.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)


def input_array(x: torch.Tensor, source, fixed_size: tuple) -> np.ndarray:
    """`x` as a float32 numpy batch, or a one-line error if the file was exported for another H x W
    (`fixed_size` holds None where the file's size is dynamic)."""
    for got, want in zip(x.shape[2:], fixed_size):
        if want is not None and got != want:
            h, w = fixed_size
            raise SceneparseError(f"{source}: exported for input {h}x{w}, got {x.shape[2]}x{x.shape[3]} "
                                  f"(use --mode slide --crop {h}x{w}, or export with --dynamic)")
    return x.detach().to("cpu", torch.float32).contiguous().numpy()


class OrtEngine:
    """An ONNX file in onnxruntime, called like a torch model in eval mode: images in, logits out.

    `metadata` holds the file's sceneparse metadata (classes, palette, mean, std, ...).
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        check_threads(threads)
        if not self.path.is_file():
            raise SceneparseError(f"{self.path}: ONNX file not found")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise SceneparseError(f"{self.path}: not a loadable ONNX model ({first})") from None
        props = self.session.get_modelmeta().custom_metadata_map
        self.metadata = {k: _json(v) for k, v in props.items()}
        self.input = self.session.get_inputs()[0]
        self.input_name = self.input.name
        # Fixed H, W of the file, or None where dynamic (names/strings are symbolic dims).
        self.fixed_size = tuple(d if isinstance(d, int) else None for d in self.input.shape[2:])

    @property
    def num_classes(self) -> int:
        return len(self.metadata.get("classes", [])) or int(self.session.get_outputs()[0].shape[1])

    def eval(self) -> "OrtEngine":
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        array = input_array(x, self.path, self.fixed_size)
        return torch.from_numpy(self.session.run(None, {self.input_name: array})[0])


def _json(value: str):
    try:
        return json.loads(value)
    except ValueError:
        return value


def read_metadata(path: str | os.PathLike) -> dict:
    """The sceneparse metadata of an ONNX file (JSON-decoded values)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {p.key: _json(p.value) for p in model.metadata_props}


def calibration_images_in(folder: str | os.PathLike, limit: int) -> list[Path]:
    """Up to `limit` images under `folder` (recursive, sorted, evenly spread over the sorted list)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SceneparseError(f"--calibration {folder}: not a folder")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise SceneparseError(f"--calibration {folder}: no images found")
    if len(files) > limit:
        files = [files[i * len(files) // limit] for i in range(limit)]
    return files


def _openvino():
    try:
        import openvino
    except ImportError:
        raise SceneparseError("engine openvino needs OpenVINO: pip install 'sceneparse[openvino]'") from None
    return openvino


@functools.cache
def _core():
    """The process's one OpenVINO Core, shared by every engine: a test worker that made a new Core
    per model crashed minutes later with a segfault, in unrelated code."""
    return _openvino().Core()


def openvino_capabilities() -> set[str]:
    """What OpenVINO's CPU plugin runs natively here, e.g. {"FP32", "BF16", "INT8"}."""
    return set(_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def weights_key(model: torch.nn.Module) -> str:
    """A short hash of a network's structure (its repr: layers, activations, dilations) and weights."""
    h = hashlib.sha256(repr(model).encode())
    for name, tensor in model.state_dict().items():
        h.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:20]


class OvEngine:
    """An OpenVINO model on the CPU, called like a torch model in eval mode: images in, logits out.

    `precision` is the compute precision: "f32" (exact: labels agree with torch), "bf16" (CPUs
    with avx512_bf16 or AMX only) or "int8" (a model quantized by `quantize_openvino`, the rest in
    f32). Each input shape gets its own statically shaped compiled model (compiling takes about
    0.15 s for DABNet and a static model runs at least as fast as a dynamic one); after
    `MAX_STATIC_SHAPES` different shapes (photos of many sizes) one dynamic compiled model serves
    every further shape.
    """

    MAX_STATIC_SHAPES = 4

    def __init__(self, model, precision: str = "f32", threads: int | None = None, metadata: dict | None = None,
                 source: str = "openvino model"):
        check_threads(threads)
        if precision not in OV_PRECISIONS:
            raise SceneparseError(f"unknown precision '{precision}' (valid: {', '.join(OV_PRECISIONS)})")
        if precision == "bf16" and "BF16" not in openvino_capabilities():
            raise SceneparseError(f"--precision bf16: this CPU ({cpu_name()}) has no native bf16 "
                                  f"(avx512_bf16 or AMX); use f32, or int8")
        self.model, self.precision, self.source = model, precision, source
        self.metadata = dict(metadata or {})
        self.config = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
                       "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            self.config["INFERENCE_NUM_THREADS"] = threads
        shape = model.inputs[0].get_partial_shape()
        self.fixed_size = tuple(d.get_length() if d.is_static else None for d in list(shape)[2:])
        self.requests: dict[tuple, object] = {}
        self.dynamic = None

    @classmethod
    def from_file(cls, path: str | os.PathLike, precision: str = "f32", threads: int | None = None) -> "OvEngine":
        """An exported .onnx file or OpenVINO IR (.xml beside its .bin), with its sceneparse metadata."""
        path = Path(path)
        if not path.is_file():
            raise SceneparseError(f"{path}: model file not found")
        if precision == "int8":
            raise SceneparseError(f"{path}: --precision int8 quantizes a checkpoint; a file runs at the precision "
                                  f"it was exported with (sceneparse export --format openvino --quantize int8)")
        try:
            model = _core().read_model(str(path))
        except Exception as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise SceneparseError(f"{path}: not a loadable ONNX or OpenVINO model ({first})") from None
        meta = read_metadata(path) if path.suffix.lower() == ".onnx" else ir_metadata(model)
        return cls(model, precision, threads, meta, str(path))

    @classmethod
    def from_module(cls, module: torch.nn.Module, metadata: dict | None = None, precision: str = "f32",
                    threads: int | None = None, calibration: Sequence[np.ndarray] = (),
                    cache: str | os.PathLike | None = None) -> "OvEngine":
        """Convert a torch network (eval) to OpenVINO, with dynamic batch and size.

        The converted model is cached as IR under `cache`/openvino (default the user's sceneparse
        cache), keyed by the network's structure and weights (and, for int8, the calibration
        inputs): a changed checkpoint is converted again, an unchanged one loads in a fraction of a
        second. int8 needs `calibration`: normalised (1, 3, H, W) float32 arrays (training images).
        """
        if precision == "int8" and not len(calibration):
            raise SceneparseError("--precision int8 needs calibration images (--calibration DIR, e.g. training photos)")
        key = weights_key(module)
        if precision == "int8":
            h = hashlib.sha256(key.encode())
            for array in calibration:
                h.update(np.ascontiguousarray(array, dtype=np.float32).tobytes())
            key = "int8-" + h.hexdigest()[:20]
        folder = Path(cache or default_cache()) / "openvino"
        path = folder / f"{key}.xml"
        model = None
        if path.is_file() and path.with_suffix(".bin").is_file():
            try:
                model = _core().read_model(str(path))
            except Exception:
                model = None  # a damaged cache entry: convert again
        if model is None:
            model = convert_module(module, metadata or {})
            if precision == "int8":
                model = quantize_openvino(model, calibration)
            try:
                save_ir(model, path)
            except OSError:
                pass  # a read-only cache: run the converted model, convert again next time
        return cls(model, precision, threads, metadata, f"{module.__class__.__name__} (openvino cache {path.name})")

    def eval(self) -> "OvEngine":
        return self

    @property
    def num_classes(self) -> int:
        return len(self.metadata.get("classes", [])) or int(self.model.outputs[0].get_partial_shape()[1].get_length())

    def _request(self, shape: tuple[int, ...]):
        if shape in self.requests:
            return self.requests[shape]
        if len(self.requests) >= self.MAX_STATIC_SHAPES:
            if self.dynamic is None:
                self.dynamic = _core().compile_model(self.model, "CPU", self.config).create_infer_request()
            return self.dynamic
        static = self.model.clone()
        static.reshape(list(shape))
        self.requests[shape] = _core().compile_model(static, "CPU", self.config).create_infer_request()
        return self.requests[shape]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        array = input_array(x, self.source, self.fixed_size)
        return torch.from_numpy(self._request(tuple(array.shape)).infer({0: array})[0])


def convert_module(module: torch.nn.Module, metadata: dict):
    """A torch network (eval) as an OpenVINO model with dynamic batch and size, carrying `metadata`."""
    ov = _openvino()
    try:
        with quiet(), torch.no_grad():
            model = ov.convert_model(module.eval(), example_input=torch.zeros(1, 3, 256, 256),
                                     input=[(-1, 3, -1, -1)])
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise SceneparseError(f"{module.__class__.__name__}: OpenVINO could not convert it ({first})") from None
    if metadata:
        model.set_rt_info(json.dumps(metadata), ["sceneparse"])
    return model


def ir_metadata(model) -> dict:
    """The sceneparse metadata an OpenVINO model carries (empty if none)."""
    if not model.has_rt_info(["sceneparse"]):
        return {}
    return _json(model.get_rt_info(["sceneparse"]).astype(str)) or {}


def quantize_openvino(model, calibration: Sequence[np.ndarray]):
    """int8 post-training quantization (NNCF, OpenVINO backend) calibrated on normalised inputs;
    the metadata is kept, with precision "int8"."""
    try:
        import nncf
    except ImportError:
        raise SceneparseError("int8 with OpenVINO needs NNCF: pip install 'sceneparse[openvino]'") from None
    meta = ir_metadata(model)
    with quiet(stderr=True):
        quantized = nncf.quantize(model, nncf.Dataset(list(calibration)), subset_size=len(calibration))
    if meta:
        meta.update(precision="int8", calibration_images=len(calibration))
        quantized.set_rt_info(json.dumps(meta), ["sceneparse"])
    return quantized


def save_ir(model, path: str | os.PathLike) -> None:
    """Write an OpenVINO IR (.xml and .bin) atomically, weights in f32 (no fp16 compression)."""
    ov = _openvino()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=".ir-"))
    try:
        ov.save_model(model, str(tmp / "model.xml"), compress_to_fp16=False)
        os.replace(tmp / "model.bin", path.with_suffix(".bin"))
        os.replace(tmp / "model.xml", path)  # last: an .xml exists only beside its complete .bin
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def calibration_arrays(files: Sequence[Path], mean: Sequence[float], std: Sequence[float],
                       size: tuple[int, int] | None = None) -> list[np.ndarray]:
    """Images as normalised (1, 3, H, W) float32 arrays for int8 calibration, resized to `size` if given."""
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    arrays = []
    for path in files:
        x = torch.from_numpy(read_image(path).copy()).permute(2, 0, 1)[None].float().div_(255)
        if size:
            x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False)
        arrays.append(((x - mean_t) / std_t).numpy())
    return arrays
