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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sceneparse.models import build_model
from sceneparse.utils import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD, SceneparseError, atomic_path

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
    """Write atomically: a crash mid-write leaves the previous file intact."""
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)


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
    except Exception as e:  # torch raises many types for truncated/foreign files
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SceneparseError(f"{path}: not a readable checkpoint ({first[:200]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise SceneparseError(f"{path}: not a sceneparse checkpoint (no '{FORMAT}' marker)")
    if ckpt.get("version", 0) > VERSION:
        raise SceneparseError(f"{path}: checkpoint version {ckpt['version']} is newer than this sceneparse "
                              f"understands ({VERSION}); upgrade sceneparse")
    return ckpt


def model_from_checkpoint(ckpt: dict) -> torch.nn.Module:
    """Build the checkpoint's network, load its weights (as fp32) and put it in eval mode."""
    spec = ckpt["model"]
    model = build_model(spec["name"], spec["num_classes"], **spec.get("options", {}))
    state = {k: v.float() if torch.is_floating_point(v) else v for k, v in ckpt["state_dict"].items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise SceneparseError(f"checkpoint weights do not fit {spec['name']}: missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}")
    return model.eval()
