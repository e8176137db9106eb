"""Checkpoint format: everything `predict` and `evaluate` need, in one file.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it loads with
`torch.load(weights_only=True)`:

    format        "sceneparse-checkpoint"
    version       1
    model         {"name": str, "num_classes": int, "options": dict}
    classes       [str, ...]                 class names, index order
    palette       [[r, g, b], ...]           one colour per class
    ignore_index  255
    normalization {"mean": [3 floats], "std": [3 floats]}   on 0..1 pixel values
    dataset       {"name": str, "label_set": str}   what the classes mean ("" when unknown);
                  optional "photo_size": [H, W] when every training photo had that size (the
                  pix2pix pairs): inference resizes images to it by default (`--resize`)
    state_dict    model weights (fp32, or fp16 for shipped models; loaded as fp32); with
                  `ema_decay` the averaged weights, the raw ones in train_state["raw_state_dict"]
    config        the resolved training config (dict), may be {}
    metrics       last evaluation report (dict), may be {}
    train_state   optional, what `--resume` needs: `TrainState.to_dict()` (iteration, epoch, best
                  val mIoU, optimiser and RNG state, ...)

Wherever a checkpoint path is accepted, the name of a built-in model (`camvid`, `cityscapes`)
is accepted too.
"""
from __future__ import annotations

import dataclasses
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sceneparse.models import build_model
from sceneparse.utils import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD, SceneparseError, atomic_path, os_error_reason

FORMAT = "sceneparse-checkpoint"
VERSION = 1
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
BUILTIN = {"camvid": "camvid.pt", "cityscapes": "cityscapes.pt"}
DEFAULT_BUILTIN = "camvid"  # what `predict`, `evaluate` and `Segmenter.from_checkpoint()` use when given no model


@dataclass
class TrainState:
    """Where a training run stands: what `--resume` restores besides the weights.

    `raw_state_dict` holds the raw weights when the checkpoint's `state_dict` is their moving
    average (`ema_decay`); training continues from the raw ones.
    """

    iteration: int = 0
    epoch: int = 0
    best_miou: float = -1.0
    best_iteration: int = -1
    bad_evals: int = 0
    elapsed: float = 0.0                      # seconds of training over all sessions
    optimizer: dict = field(default_factory=dict)
    rng: dict = field(default_factory=dict)   # {"torch": ByteTensor, optional "cuda": [...]}
    raw_state_dict: dict | None = None

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # no deep copy
        if self.raw_state_dict is None:
            del out["raw_state_dict"]
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "TrainState":
        """Read a checkpoint's `train_state`; keys this version does not know are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def make_checkpoint(model_name: str, num_classes: int, model_options: dict, state_dict: dict,
                    classes: list[str], palette: list, dataset: str = "", label_set: str = "",
                    mean: tuple = IMAGENET_MEAN, std: tuple = IMAGENET_STD, config: dict | None = None,
                    metrics: dict | None = None, train_state: dict | None = None,
                    photo_size: tuple[int, int] | None = None) -> dict:
    """Assemble a checkpoint dict in the documented format.

    `photo_size` (H, W) is for data sets of fixed-size resized photos (the pix2pix pairs): inference
    then resizes every image to it by default (see `sceneparse.inference.resolve_resize`).
    """
    if len(classes) != num_classes or len(palette) != num_classes:
        raise ValueError(f"{num_classes} classes but {len(classes)} names and {len(palette)} colours")
    ckpt = {
        "format": FORMAT, "version": VERSION,
        "model": {"name": model_name, "num_classes": int(num_classes), "options": dict(model_options)},
        "classes": list(classes), "palette": [list(map(int, c)) for c in palette],
        "ignore_index": IGNORE_INDEX,
        "normalization": {"mean": list(map(float, mean)), "std": list(map(float, std))},
        "dataset": {"name": dataset, "label_set": label_set},
        "state_dict": state_dict, "config": config or {}, "metrics": metrics or {},
    }
    if photo_size is not None:
        ckpt["dataset"]["photo_size"] = [int(v) for v in photo_size]
    if train_state is not None:
        ckpt["train_state"] = train_state
    return ckpt


def save_checkpoint(ckpt: dict, path: str | os.PathLike) -> None:
    """Write atomically: a crash mid-write (or a full disk) leaves the previous file intact."""
    try:
        with atomic_path(path) as tmp:
            torch.save(ckpt, tmp)
    except OSError as e:
        raise SceneparseError(f"{path}: could not write the checkpoint ({os_error_reason(e)}); the previous "
                              f"file, if any, is intact") from None
    except RuntimeError as e:  # torch's zip writer reports a failed write (ENOSPC) as RuntimeError
        if "write" not in str(e).lower():
            raise
        raise SceneparseError(f"{path}: could not write the checkpoint (file write failed: disk full?); the "
                              f"previous file, if any, is intact") from None


def nonfinite_weights(state_dict: dict) -> list[str]:
    """Names of the floating-point tensors of `state_dict` holding NaN or infinity."""
    return [k for k, v in state_dict.items()
            if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())]


def _refusal(path: Path, e: Exception) -> SceneparseError:
    """What a failed weights_only load says: never torch's advice to load the file unsafely."""
    text = str(e)
    if isinstance(e, pickle.UnpicklingError) or "weights only" in text.lower() or "weights_only" in text:
        found = re.search(r"(?:GLOBAL|global) ([\w.]+)", text)
        what = f" ({found.group(1)})" if found else ""
        return SceneparseError(f"{path}: refused: the file asks to create Python objects{what} that a checkpoint "
                               f"never holds (only tensors, numbers, strings, lists and dicts are loaded); it "
                               f"is not a sceneparse checkpoint, or it was tampered with")
    lines = [line for line in text.strip().splitlines() if line.strip()]
    first = lines[0] if lines else type(e).__name__
    return SceneparseError(f"{path}: not a readable checkpoint ({first[:200]})")


def _check_fit(path: Path, name: str, num_classes: int, options: dict, state: dict) -> None:
    """The weights are those of the network the metadata names (built on the meta device: no memory)."""
    try:
        with torch.device("meta"):
            expected = build_model(name, num_classes, **options).state_dict()
    except SceneparseError as e:
        raise SceneparseError(f"{path}: {e}") from None
    except Exception as e:  # options the network cannot take
        raise SceneparseError(f"{path}: cannot build the checkpoint's network {name} ({type(e).__name__}: "
                              f"{str(e).strip().splitlines()[0][:150] if str(e).strip() else ''})") from None
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise SceneparseError(f"{path}: weights do not fit {name}: missing {missing[:3]}, unexpected {unexpected[:3]}")
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise SceneparseError(f"{path}: weights contradict the metadata: {k} has shape {list(state[k].shape)}, "
                                  f"{name} with {num_classes} classes needs {list(v.shape)}")


def _check_metadata(path: Path, ckpt: dict) -> None:
    """The metadata agrees with itself and the weights are tensors, all finite."""
    model = ckpt.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("name"), str) \
            or not isinstance(model.get("options", {}), dict):
        raise SceneparseError(f"{path}: checkpoint has no valid 'model' entry (name, num_classes, options)")
    n = model.get("num_classes")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise SceneparseError(f"{path}: checkpoint's model.num_classes must be a positive integer, got {n!r}")
    classes = ckpt.get("classes")
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise SceneparseError(f"{path}: checkpoint has no list of class names ('classes')")
    if len(classes) != n:
        raise SceneparseError(f"{path}: checkpoint names {len(classes)} classes but its model has {n}")
    palette = ckpt.get("palette")
    if not isinstance(palette, list) or len(palette) != n or not all(
            isinstance(c, (list, tuple)) and len(c) == 3
            and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in c) for c in palette):
        got = len(palette) if isinstance(palette, list) else type(palette).__name__
        raise SceneparseError(f"{path}: checkpoint's palette must hold {n} [R, G, B] colours (0-255), got {got}")
    norm = ckpt.get("normalization")
    if (not isinstance(norm, dict) or not _three_numbers(norm.get("mean")) or not _three_numbers(norm.get("std"))
            or min(norm["std"]) <= 0):
        raise SceneparseError(f"{path}: checkpoint's normalization must be 3 means and 3 positive stds")
    if not isinstance(ckpt.get("dataset"), dict):
        raise SceneparseError(f"{path}: checkpoint has no 'dataset' entry")
    state = ckpt.get("state_dict")
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SceneparseError(f"{path}: checkpoint has no weights ('state_dict' of tensors)")
    _check_fit(path, model["name"], n, model.get("options", {}), state)
    bad = nonfinite_weights(state)
    if bad:
        raise SceneparseError(f"{path}: refused: {len(bad)} weight tensor(s) hold NaN or infinity (first: {bad[0]}); "
                              f"the run that wrote it diverged")


def resolve(path_or_name: str | os.PathLike | None) -> Path:
    """Map a built-in model name (or None for the default) to its file; pass paths through."""
    name = DEFAULT_BUILTIN if path_or_name is None else str(path_or_name)
    if name in BUILTIN:
        path = WEIGHTS_DIR / BUILTIN[name]
        if not path.is_file():
            raise SceneparseError(f"built-in model '{name}' is not shipped in this version ({path} missing); "
                                  f"pass --checkpoint PATH")
        return path
    return Path(name)


def load_checkpoint(path_or_name: str | os.PathLike | None) -> dict[str, Any]:
    """Load and validate a checkpoint (path or built-in name) with weights_only=True."""
    path = resolve(path_or_name)
    if not path.is_file():
        raise SceneparseError(f"{path}: checkpoint not found (nor a built-in model: {', '.join(BUILTIN)})")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for truncated/foreign/hostile files
        raise _refusal(path, e) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise SceneparseError(f"{path}: not a sceneparse checkpoint (no '{FORMAT}' marker)")
    version = ckpt.get("version", 0)
    if not isinstance(version, int):
        raise SceneparseError(f"{path}: checkpoint version {version!r} is not a number")
    if version > VERSION:
        raise SceneparseError(f"{path}: checkpoint version {ckpt['version']} is newer than this sceneparse "
                              f"understands ({VERSION}); upgrade sceneparse")
    _check_metadata(path, ckpt)
    return ckpt


def eval_size(text: str) -> tuple[int, ...]:
    """'torch.Size([3, 4])' -> (3, 4)."""
    return tuple(int(v) for v in re.findall(r"\d+", text))


def model_from_checkpoint(ckpt: dict) -> torch.nn.Module:
    """Build the checkpoint's network, load its weights (as fp32) and put it in eval mode."""
    spec = ckpt["model"]
    model = build_model(spec["name"], spec["num_classes"], **spec.get("options", {}))
    state = {k: v.float() if torch.is_floating_point(v) else v for k, v in ckpt["state_dict"].items()}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # a size mismatch: the metadata (class count, options) contradicts the weights
        found = re.search(r"size mismatch for ([\w.]+): copying a param with shape (torch.Size\(\[[\d, ]*\]\)) "
                          r"from checkpoint, the shape in current model is (torch.Size\(\[[\d, ]*\]\))", str(e))
        detail = (f"{found.group(1)} has shape {list(eval_size(found.group(2)))} in the file, "
                  f"{list(eval_size(found.group(3)))} for {spec['num_classes']} classes"
                  if found else str(e).strip().splitlines()[-1][:200])
        raise SceneparseError(f"checkpoint weights contradict its metadata ({spec['name']}, {spec['num_classes']} "
                              f"classes, options {spec.get('options', {})}): {detail}") from None
    if missing or unexpected:
        raise SceneparseError(f"checkpoint weights do not fit {spec['name']}: missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}")
    return model.eval()


def _three_numbers(values) -> bool:
    return (isinstance(values, list) and len(values) == 3
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values))
