"""Training configuration: one flat, typed dataclass read from YAML and overridden by `--set`.

Flat on purpose: every key is one line of the YAML and one `--set key=value`.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import torch
import yaml

from sceneparse.utils import SceneparseError, atomic_path


@dataclass
class TrainConfig:
    # model
    model: str = "pspnet_resnet18"
    model_options: dict = field(default_factory=dict)
    backbone_weights: str = ""          # "", a torchvision-format file, or "imagenet" (after `weights fetch`)
    # data
    dataset: str = "camvid"
    root: str = ""                      # relative paths resolve against the config file's folder
    train_split: str = "train"
    val_split: str = "val"
    label_set: str = ""                 # cityscapes*: "classes" (19) or "categories" (7); "" = dataset default
    dataset_options: dict = field(default_factory=dict)
    crop_size: list = field(default_factory=lambda: [360, 480])   # H, W of training crops
    crop_schedule: list = field(default_factory=list)  # smaller crops first: [[until_fraction, H, W], ...]
    scale: list = field(default_factory=lambda: [0.5, 2.0])       # random scale range
    flip: bool = True
    jitter: float = 0.0                 # photometric jitter strength (0 = off)
    eval_size: list = field(default_factory=list)                 # [H, W] resize for validation; [] = native
    batch_size: int = 8
    workers: int = 2
    cache: bool = True                  # keep decoded images in memory (small datasets)
    # optimisation
    optimizer: str = "sgd"              # sgd | adamw
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_schedule: str = "poly"           # poly (after warmup_iters) | onecycle (30% cosine rise, cosine fall)
    poly_power: float = 0.9
    warmup_iters: int = 0
    epochs: int = 0                     # exactly one of epochs / iterations > 0
    iterations: int = 0
    accumulate: int = 1                 # gradient accumulation steps per optimiser step
    aux_weight: float = 0.4
    class_weights: str = "none"         # none | median_freq | enet | path to a `data stats` JSON
    label_smoothing: float = 0.0
    ohem_keep: float = 0.0              # loss over the hardest fraction of labelled pixels (OHEM), 0 = all
    ema_decay: float = 0.0              # evaluate and save an EMA of the weights (e.g. 0.999), 0 = off
    bf16: bool = False                  # bf16 autocast: faster only on CPUs with bf16 units (docs/training.md)
    channels_last: bool = False         # NHWC: several times faster depth-wise convs on CPU
    compile: bool = False               # torch.compile the model's training forward (see training/step.py)
    sync_bn: bool = True                # only used with >1 process on GPU
    # evaluation and checkpoints
    eval_interval: int = 1              # evaluate every N epochs (or N*iters_per_epoch iterations)
    eval_mode: str = "whole"            # whole | slide (slide needs eval_crop)
    eval_crop: list = field(default_factory=list)                 # [H, W] sliding window
    early_stop: int = 0                 # stop after N evaluations without a better val mIoU (0 = off)
    checkpoint_minutes: float = 10.0    # also write last.pt this often within an epoch
    log_interval: int = 10              # iterations between log.csv rows
    seed: int = 0
    device: str = "auto"                # auto | cpu | cuda


def field_types() -> dict[str, type]:
    hints = get_type_hints(TrainConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(TrainConfig)}


def _check_type(key: str, value: Any, where: str) -> Any:
    expected = field_types()[key]
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if expected is float and isinstance(value, str):  # PyYAML reads 1e-3 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if expected is int and isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, expected) or (expected in (int, float) and isinstance(value, bool)):
        raise SceneparseError(f"{where}: '{key}' must be {expected.__name__}, got {type(value).__name__} "
                              f"{value!r}")
    return value


def _unknown(key: str, where: str) -> SceneparseError:
    return SceneparseError(f"{where}: unknown key '{key}'; valid keys: {', '.join(field_types())}")


def load_config(path: str | os.PathLike, overrides: list[str] = ()) -> TrainConfig:
    """Read a YAML config, apply `key=value` overrides (values parsed as YAML), type-check all."""
    path = Path(path)
    if not path.is_file():
        raise SceneparseError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise SceneparseError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise SceneparseError(f"{path}: expected a mapping of keys to values")
    types = field_types()
    values = {}
    for key, value in data.items():
        if key not in types:
            raise _unknown(key, str(path))
        values[key] = _check_type(key, value, str(path))
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep:
            raise SceneparseError(f"--set {item}: expected KEY=VALUE")
        if key not in types:
            raise _unknown(key, f"--set {item}")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        if types[key] is str and not isinstance(value, str):
            value = raw.strip()
        values[key] = _check_type(key, value, f"--set {item}")
    cfg = TrainConfig(**values)
    if cfg.root and not Path(cfg.root).is_absolute():
        cfg.root = str((path.parent / cfg.root).resolve())
    validate(cfg, str(path))
    return cfg


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate(cfg: TrainConfig, where: str = "config") -> None:
    """Every range check of a config, in one place: `load_config` and `train` both call it."""
    for key in ("epochs", "iterations"):
        if getattr(cfg, key) < 0:
            raise SceneparseError(f"{where}: '{key}' must be >= 0, got {getattr(cfg, key)}")
    if (cfg.epochs > 0) == (cfg.iterations > 0):
        raise SceneparseError(f"{where}: set exactly one of 'epochs' and 'iterations' to a positive number")
    for key in ("eval_interval", "log_interval"):
        if getattr(cfg, key) < 1:
            raise SceneparseError(f"{where}: '{key}' must be >= 1, got {getattr(cfg, key)}")
    for key in ("early_stop", "workers", "seed", "warmup_iters"):
        if getattr(cfg, key) < 0:
            raise SceneparseError(f"{where}: '{key}' must be >= 0, got {getattr(cfg, key)}")
    if not cfg.lr > 0 or cfg.lr == float("inf"):
        raise SceneparseError(f"{where}: 'lr' must be a positive number, got {cfg.lr}")
    for key in ("momentum", "weight_decay", "poly_power", "aux_weight", "label_smoothing", "jitter"):
        value = getattr(cfg, key)
        if not 0 <= value < float("inf"):
            raise SceneparseError(f"{where}: '{key}' must be >= 0, got {value}")
    if cfg.label_smoothing >= 1:
        raise SceneparseError(f"{where}: 'label_smoothing' must be in [0, 1), got {cfg.label_smoothing}")
    if not cfg.checkpoint_minutes > 0:
        raise SceneparseError(f"{where}: 'checkpoint_minutes' must be > 0, got {cfg.checkpoint_minutes}")
    if cfg.device not in ("auto", "cpu", "cuda"):
        raise SceneparseError(f"{where}: 'device' must be auto, cpu or cuda, got {cfg.device!r}")
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise SceneparseError(f"{where}: 'device: cuda' but this torch sees no CUDA GPU (use auto or cpu)")
    if cfg.lr_schedule not in ("poly", "onecycle"):
        raise SceneparseError(f"{where}: 'lr_schedule' must be poly or onecycle, got {cfg.lr_schedule!r}")
    if cfg.optimizer not in ("sgd", "adamw"):
        raise SceneparseError(f"{where}: 'optimizer' must be sgd or adamw, got {cfg.optimizer!r}")
    if len(cfg.crop_size) != 2 or len(cfg.scale) != 2:
        raise SceneparseError(f"{where}: 'crop_size' and 'scale' take two numbers each")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in cfg.crop_size):
        raise SceneparseError(f"{where}: 'crop_size' must be two positive whole numbers [H, W], got {cfg.crop_size}")
    if not all(_number(v) and 0 < v < float("inf") for v in cfg.scale) or cfg.scale[0] > cfg.scale[1]:
        raise SceneparseError(f"{where}: 'scale' must be [min, max] with 0 < min <= max, got {cfg.scale}")
    _check_crop_schedule(cfg, where)
    if cfg.eval_size and len(cfg.eval_size) != 2:
        raise SceneparseError(f"{where}: 'eval_size' takes [H, W] or []")
    for key in ("eval_size", "eval_crop"):
        value = getattr(cfg, key)
        if value and not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value):
            raise SceneparseError(f"{where}: '{key}' must be two positive whole numbers [H, W] (or []), got {value}")
    if cfg.batch_size < 1 or cfg.accumulate < 1:
        raise SceneparseError(f"{where}: 'batch_size' and 'accumulate' must be >= 1")
    if not 0 <= cfg.ohem_keep <= 1 or not 0 <= cfg.ema_decay < 1:
        raise SceneparseError(f"{where}: 'ohem_keep' must be in [0, 1] and 'ema_decay' in [0, 1)")
    if cfg.eval_mode not in ("whole", "slide"):
        raise SceneparseError(f"{where}: 'eval_mode' must be whole or slide")
    if cfg.eval_mode == "slide" and len(cfg.eval_crop) != 2:
        raise SceneparseError(f"{where}: 'eval_mode: slide' needs 'eval_crop: [H, W]'")


def _check_crop_schedule(cfg: TrainConfig, where: str) -> None:
    """Stages [until_fraction, H, W] in increasing order, each crop no larger than crop_size."""
    last = 0.0
    for stage in cfg.crop_schedule:
        if (not isinstance(stage, list) or len(stage) != 3
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in stage)):
            raise SceneparseError(f"{where}: 'crop_schedule' takes [until_fraction, H, W] entries, got {stage!r}")
        until, h, w = stage
        if not last < until <= 1:
            raise SceneparseError(f"{where}: 'crop_schedule' fractions must increase within (0, 1], got {until}")
        if not (0 < h <= cfg.crop_size[0] and 0 < w <= cfg.crop_size[1]):
            raise SceneparseError(f"{where}: 'crop_schedule' crop {h}x{w} must fit in crop_size "
                                  f"{cfg.crop_size[0]}x{cfg.crop_size[1]}")
        last = until


def save_config(cfg: TrainConfig, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))


def as_dict(cfg: TrainConfig) -> dict:
    return dataclasses.asdict(cfg)
