"""Exported-model engines: an ONNX file in onnxruntime, called like a torch model, and the
sceneparse metadata an exported file carries.

The metadata (ONNX metadata_props, JSON values) holds what `predict` needs without a checkpoint:
classes, palette, mean, std, model, num_classes, dataset, label_set, optional photo_size, and
the export's precision and input_size.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from sceneparse.utils import SceneparseError, check_threads


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
        for got, want in zip(x.shape[2:], self.fixed_size):
            if want is not None and got != want:
                raise SceneparseError(f"{self.path}: exported for input {self.fixed_size[0]}x{self.fixed_size[1]}, "
                                      f"got {x.shape[2]}x{x.shape[3]} (use --mode slide --crop "
                                      f"{self.fixed_size[0]}x{self.fixed_size[1]}, or export with --dynamic)")
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
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
