"""Export for fast inference: ONNX (fp32 and int8), OpenVINO IR (f32 and int8) and slim checkpoints.

Export goes through `torch.export` and the dynamo ONNX exporter (torch.onnx.export(dynamo=True)),
which handles SegNet's unpooling scatter. Adaptive pooling needs help, found by testing on torch
2.13: `adaptive_max_pool2d` (PSP-VGG19's pyramid *max* pooling) has no ONNX translation at all,
and the stock decomposition of `adaptive_avg_pool2d` for bins that do not divide the feature size
(3 and 6) gathers with indices fixed at the traced size, so a `--dynamic` model silently gives
wrong numbers, or fails, at any other size. Both are therefore decomposed here, before the
exporter sees them, into bin masks computed from the (symbolic) input size exactly as PyTorch
defines the bins (start = floor(i*H/b), end = ceil((i+1)*H/b)): average pooling becomes two
MatMuls with the normalised masks, max pooling two masked ReduceMax; the graph is right at every
size. Each export is checked against torch (at another size than traced, when dynamic) before
the file is written.

The ONNX file carries what `predict` needs in its metadata (`sceneparse.runtime`): classes,
palette, mean, std, model, num_classes, dataset, label_set, precision and input_size.

int8 is onnxruntime static quantization: QDQ format, int8 per-channel weights, uint8 activations
(the recommended setting for x86 CPUs with VNNI), MinMax ranges calibrated on images preprocessed
exactly like inference (PyTorch's PT2E x86 quantizer moved to torchao, which is not installed).

OpenVINO IR (an .xml and its .bin) is converted from the torch network by OpenVINO's own
converter, with dynamic batch and size (OpenVINO compiles for each input size when it runs); int8
is NNCF's post-training quantization on the calibration images (`sceneparse.runtime`).
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import torch

from sceneparse.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from sceneparse.runtime import (OrtEngine, calibration_arrays, calibration_images_in, checkpoint_metadata,
                                convert_module, quantize_openvino, read_metadata, save_ir, write_metadata)
from sceneparse.utils import SceneparseError, atomic_path, quiet, writable_file

TRACE_SIZE = (193, 257)  # odd, not divisible by the bins: a dynamic export is traced at a generic size
CHECK_SIZE = (97, 129)  # a dynamic export is checked at a size it was not traced at
aten = torch.ops.aten


# ---------------------------------------------------------------- adaptive pooling for export
def _bin_masks(size, bins: int, device) -> torch.Tensor:
    """(bins, size) bool: which positions each adaptive-pooling bin covers, as PyTorch defines them.

    Computed with tensor ops from the (symbolic) size: slicing with symbolic bounds instead makes
    the exporter's shape reasoning take minutes. Only non-negative integers are divided, because
    the exporter turns floor division into ONNX Div, which truncates.
    """
    i = torch.arange(bins, device=device)
    start = torch.div(i * size, bins, rounding_mode="floor")
    end = torch.div((i + 1) * size + bins - 1, bins, rounding_mode="floor")
    position = torch.arange(size, device=device)
    return (position >= start[:, None]) & (position < end[:, None])


def _adaptive_avg(x: torch.Tensor, output_size: Sequence[int]) -> torch.Tensor:
    rows = _bin_masks(x.shape[-2], output_size[0], x.device).to(x.dtype)
    cols = _bin_masks(x.shape[-1], output_size[1], x.device).to(x.dtype)
    rows = rows / rows.sum(1, keepdim=True)
    cols = cols / cols.sum(1, keepdim=True)
    return rows @ x @ cols.t()  # two MatMuls: (bh, H) x (N, C, H, W) x (W, bw)


def _adaptive_max(x: torch.Tensor, output_size: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    rows = _bin_masks(x.shape[-2], output_size[0], x.device)
    cols = _bin_masks(x.shape[-1], output_size[1], x.device)
    low = torch.finfo(x.dtype).min
    y = torch.where(rows[:, :, None], x[:, :, None], low).amax(3)  # (N, C, bh, W)
    out = torch.where(cols, y[:, :, :, None], low).amax(-1)  # (N, C, bh, bw)
    return out, torch.zeros_like(out, dtype=torch.long)  # indices: unused by the zoo's eval networks


POOL_DECOMPOSITIONS = {aten.adaptive_avg_pool2d.default: _adaptive_avg,
                       aten._adaptive_avg_pool2d.default: _adaptive_avg,
                       aten.adaptive_max_pool2d.default: _adaptive_max}


# ---------------------------------------------------------------- fp32 export
def export_onnx(model: torch.nn.Module, path: str | os.PathLike, size: tuple[int, int] | None = None,
                metadata: dict | None = None, check: bool = True) -> None:
    """Write `model` (eval) as ONNX: input `image` (N, 3, H, W), output `logits`; batch always dynamic.

    `size` fixes H and W (None: dynamic). With `check`, onnxruntime must match torch on a random
    input (at another size than traced, when dynamic) before the file is written.
    """
    import onnx

    model = model.eval()
    dim = torch.export.Dim.AUTO
    example = torch.randn(2, 3, *(size or TRACE_SIZE))
    dynamic = {0: dim} if size else {0: dim, 2: dim, 3: dim}
    name = (metadata or {}).get("model", type(model).__name__)
    try:
        with quiet(), torch.no_grad():
            program = torch.export.export(model, (example,), dynamic_shapes=(dynamic,), strict=False)
            program = program.run_decompositions(POOL_DECOMPOSITIONS)
            onnx_program = torch.onnx.export(program, dynamo=True, input_names=["image"], output_names=["logits"],
                                             optimize=True)
    except Exception as e:  # the exporter raises many types; the user needs one line
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        hint = "; try a fixed --size HxW" if size is None else ""
        raise SceneparseError(f"{name}: ONNX export failed ({type(e).__name__}: {first}){hint}") from None
    proto = onnx_program.model_proto
    if size is None and any(d.HasField("dim_value") for d in proto.graph.input[0].type.tensor_type.shape.dim[2:]):
        raise SceneparseError(f"{name}: the network's height/width could not stay dynamic in ONNX; "
                              f"export with --size HxW")
    meta = dict(metadata or {})
    meta.update(precision="fp32", input_size=list(size) if size else "dynamic")
    write_metadata(proto, meta)
    with atomic_path(path) as tmp:
        onnx.save_model(proto, str(tmp))
        if check:
            _check(model, tmp, size or CHECK_SIZE, name)


def _check(model: torch.nn.Module, path: Path, size: tuple[int, int], name: str) -> None:
    """Raise if onnxruntime's logits differ from torch's (relative max error above 1e-3)."""
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = model(x)
    got = OrtEngine(path)(x)
    error = float((got - expected).abs().max() / expected.abs().max().clamp_min(1e-6))
    if not error < 1e-3:
        raise SceneparseError(f"{name}: the ONNX graph disagrees with torch at {size[0]}x{size[1]} "
                              f"(relative error {error:.2g}); not written")


# ---------------------------------------------------------------- int8
class _CalibrationReader:
    """Feeds calibration arrays to onnxruntime (a duck-typed CalibrationDataReader)."""

    def __init__(self, arrays: list, input_name: str):
        self.arrays, self.input_name = iter(arrays), input_name

    def get_next(self) -> dict | None:
        array = next(self.arrays, None)
        return None if array is None else {self.input_name: array}


def quantize_int8(fp32_path: str | os.PathLike, out_path: str | os.PathLike, files: list[Path]) -> None:
    """Static int8 quantization (QDQ, per-channel int8 weights, uint8 activations, MinMax calibration).

    A dynamic-size model is calibrated at each image's own size; a fixed-size one on images resized
    to its size. The fp32 file's metadata is kept, with precision "int8".
    """
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    meta = read_metadata(fp32_path)
    if "mean" not in meta:
        raise SceneparseError(f"{fp32_path}: no sceneparse metadata (mean/std) to preprocess calibration images")
    engine = OrtEngine(fp32_path)
    size = engine.fixed_size if None not in engine.fixed_size else None
    reader = _CalibrationReader(calibration_arrays(files, meta["mean"], meta["std"], size), engine.input_name)
    with tempfile.TemporaryDirectory(dir=Path(out_path).parent) as tmp, quiet():
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        q = Path(tmp) / "int8.onnx"
        quantize_static(str(pre), str(q), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=False)
        model = onnx.load(str(q))
    meta["precision"] = "int8"
    meta["calibration_images"] = len(files)
    write_metadata(model, meta)
    with atomic_path(out_path) as tmp_out:
        onnx.save_model(model, str(tmp_out))
        ort.InferenceSession(str(tmp_out), providers=["CPUExecutionProvider"])  # loadable, or not written


# ---------------------------------------------------------------- from a checkpoint
SUFFIX_FORMATS = {".onnx": "onnx", ".xml": "openvino", ".pt": "checkpoint", ".pth": "checkpoint"}
FORMAT_SUFFIXES = {"onnx": ".onnx", "openvino": ".xml", "checkpoint": ".pt"}


def export_checkpoint(checkpoint: str | os.PathLike | None, out: str | os.PathLike, format: str | None = None,
                      size: tuple[int, int] | None = None, dynamic: bool = False, quantize: str | None = None,
                      calibration: str | os.PathLike | None = None, calibration_images: int = 32) -> Path:
    """Export a checkpoint (path or built-in name) and return the file written.

    format "onnx": the eval network, at a fixed `size` (H, W) or with `dynamic` height and width
    (one of the two), fp32 or `quantize="int8"` calibrated on up to `calibration_images` images
    from the `calibration` folder. format "openvino": OpenVINO IR (`out` is the .xml), dynamic,
    f32 or int8 likewise. format "checkpoint": weights and metadata only, without the
    training state (what ships as a built-in model). No `format`: the one `out`'s suffix names
    (.onnx, .xml, .pt or .pth), else onnx; a suffix naming another format than `format` is refused,
    since an .xml holding ONNX, or a .pt holding a network, misleads whoever opens it.
    """
    out = Path(out)
    implied = SUFFIX_FORMATS.get(out.suffix.lower())
    format = format or implied or "onnx"
    if format not in FORMAT_SUFFIXES:
        raise SceneparseError(f"unknown export format '{format}' (valid: onnx, openvino, checkpoint)")
    if implied and implied != format:
        raise SceneparseError(f"--out {out}: a {out.suffix} file is {implied}, not {format}; name it "
                              f"{out.with_suffix(FORMAT_SUFFIXES[format]).name} or give --format {implied}")
    if format == "openvino" and out.suffix.lower() != ".xml":
        raise SceneparseError(f"--out {out}: --format openvino writes an .xml file (its weights go beside it, .bin)")
    if format == "openvino" and (size or dynamic):
        raise SceneparseError("--format openvino is always dynamic (compiled for each input size when run): "
                              "drop --size/--dynamic")
    writable_file(out, "--out")  # before the export runs
    if format == "checkpoint":
        if size or dynamic or quantize or calibration:
            raise SceneparseError("--format checkpoint takes no --size, --dynamic, --quantize or --calibration")
        ckpt = load_checkpoint(checkpoint)
        model_from_checkpoint(ckpt)  # the weights must fit the network before anything is written
        ckpt.pop("train_state", None)
        save_checkpoint(ckpt, out)
        return out
    if size and dynamic:
        raise SceneparseError("give either --size HxW or --dynamic, not both")
    if quantize not in (None, "int8"):
        raise SceneparseError(f"--quantize {quantize}: only int8 is supported")
    if quantize and not calibration:
        raise SceneparseError("--quantize int8 needs --calibration DIR (images like those you will segment)")
    if calibration and not quantize:
        raise SceneparseError("--calibration is only used with --quantize int8")
    if calibration_images < 1:
        raise SceneparseError(f"--calibration-images {calibration_images}: must be at least 1")
    if size and min(size) < 32:
        raise SceneparseError(f"--size {size[0]}x{size[1]}: the networks need at least 32x32")
    files = calibration_images_in(calibration, calibration_images) if quantize else []
    ckpt = load_checkpoint(checkpoint)
    model = model_from_checkpoint(ckpt)
    print(f"exporting {ckpt['model']['name']} ({'dynamic size' if size is None else f'{size[0]}x{size[1]}'}) "
          f"to {out}", file=sys.stderr)
    if format == "openvino":
        ir = convert_module(model, checkpoint_metadata(ckpt))
        if quantize:
            norm = ckpt["normalization"]
            print(f"calibrating int8 on {len(files)} images from {calibration}", file=sys.stderr)
            ir = quantize_openvino(ir, calibration_arrays(files, norm["mean"], norm["std"],
                                                          ckpt["dataset"].get("photo_size")))
        save_ir(ir, out)
        return out
    if not quantize:
        export_onnx(model, out, size, checkpoint_metadata(ckpt))
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        export_onnx(model, fp32, size, checkpoint_metadata(ckpt))
        print(f"calibrating int8 on {len(files)} images from {calibration}", file=sys.stderr)
        quantize_int8(fp32, out, files)
    return out
