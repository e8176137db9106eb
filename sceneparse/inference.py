"""Inference modes shared by `predict` and `evaluate`, and the `Segmenter` Python API.

`infer` turns normalised images into class probabilities in one of two modes:

- whole: the network sees the whole image;
- slide: overlapping `crop` windows every `stride` pixels (the last window is aligned to the
  border), run through the network in batches; an image smaller than the window is padded with
  zeros (the mean colour after normalisation) and the padding is cut away before averaging, so it
  never contributes; each pixel's probabilities are averaged over the windows covering it.

Test-time augmentation averages softmax probabilities over `scales` (the image is resized
bilinearly, align_corners=False, and the probabilities are resized back the same way) and,
with `flip`, over the horizontally flipped image (its probabilities flipped back).

`resize` resizes every image to a fixed HxW first (and the probabilities back to the image's
size): for models trained on photos that were all resized to one size, such as the pix2pix
Cityscapes pairs (2048x1024 frames squeezed into 256x256), which then see other photos as they saw
their training data. A checkpoint trained on such data stores the size (`dataset.photo_size`) and
`Segmenter`, predict and evaluate use it unless told otherwise (`resize="native"`).

`max_size` caps the longer side the network sees: a larger image is scaled down (aspect kept) and
its probabilities are scaled back to its own size; smaller images are left alone. It is for very
large photos and video frames, where the network's cost grows with the pixels; a fixed `resize`
takes precedence over it.

An input smaller than `MIN_SIDE` (32) pixels on a side, which some networks cannot take (SegNet's
five 2x2 poolings) and which OpenVINO refuses, is padded with zeros up to it for the network call
and the padding cut from the output, so every network and engine answers for any image size.

`model` is anything that maps a float tensor (B, 3, h, w) to logits (B, C, h, w): a torch model
in eval mode, `sceneparse.runtime.OrtEngine` or `OvEngine`; `sceneparse.engines.load_network`
picks one by engine name.
"""
from __future__ import annotations

import math
import os
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from sceneparse.checkpoint import DEFAULT_BUILTIN, load_checkpoint
from sceneparse.engines import Model, load_network, model_file_classes, network_input
from sceneparse.utils import SceneparseError, read_image

WINDOW_BATCH_PIXELS = 2 ** 20  # default window batch: about a megapixel (two 512x1024 windows) per call
MAX_SCALE = 4  # test-time scales go to 2 in the field; 4 is already 16x the pixels
MIN_SIDE = 32  # the zoo's contract: every network takes any H, W >= 32 (sceneparse/models/__init__.py)


def window_starts(size: int, crop: int, stride: int) -> list[int]:
    """Start offsets of windows of length `crop` every `stride` along `size`; the last one ends at the border."""
    if size <= crop:
        return [0]
    count = math.ceil((size - crop) / stride) + 1
    return [min(i * stride, size - crop) for i in range(count)]


def default_stride(crop: tuple[int, int]) -> tuple[int, int]:
    """Two thirds of the window (a third of overlap), as mmsegmentation's Cityscapes configs."""
    return (max(1, crop[0] * 2 // 3), max(1, crop[1] * 2 // 3))


def _forward(model: Model, x: torch.Tensor, batch_size: int | None) -> torch.Tensor:
    """Softmax probabilities of `x`, at most `batch_size` inputs per network call."""
    h, w = x.shape[-2:]
    if min(h, w) < MIN_SIDE:  # zeros: the mean colour once normalised; cut away below
        x = F.pad(x, (0, max(MIN_SIDE - w, 0), 0, max(MIN_SIDE - h, 0)))
    x = network_input(model, x)
    step = batch_size or len(x)
    return torch.cat([model(x[i:i + step]).float().softmax(1)[..., :h, :w] for i in range(0, len(x), step)])


def _slide(model: Model, x: torch.Tensor, crop: tuple[int, int], stride: tuple[int, int],
           batch_size: int | None) -> torch.Tensor:
    n, _, h, w = x.shape
    ch, cw = crop
    x = F.pad(x, (0, max(cw - w, 0), 0, max(ch - h, 0)))  # zeros: the mean colour once normalised
    hp, wp = x.shape[-2:]
    boxes = [(y, x0) for y in window_starts(hp, ch, stride[0]) for x0 in window_starts(wp, cw, stride[1])]
    jobs = [(i, y, x0) for y, x0 in boxes for i in range(n)]  # every window of every image
    step = batch_size or max(1, WINDOW_BATCH_PIXELS // (ch * cw))
    probs = count = None
    for k in range(0, len(jobs), step):
        chunk = jobs[k:k + step]
        out = _forward(model, torch.stack([x[i, :, y:y + ch, x0:x0 + cw] for i, y, x0 in chunk]), None)
        if probs is None:
            probs = out.new_zeros(n, out.shape[1], hp, wp)
            count = out.new_zeros(1, 1, hp, wp)
        for (i, y, x0), p in zip(chunk, out):
            probs[i, :, y:y + ch, x0:x0 + cw] += p
    for y, x0 in boxes:
        count[..., y:y + ch, x0:x0 + cw] += 1
    return (probs / count)[..., :h, :w]


@torch.inference_mode()
def infer(model: Model, images: torch.Tensor, mode: str = "whole", crop: tuple[int, int] | None = None,
          stride: tuple[int, int] | None = None, scales: Sequence[float] = (1.0,), flip: bool = False,
          batch_size: int | None = None, resize: tuple[int, int] | None = None,
          max_size: int | None = None) -> torch.Tensor:
    """Class probabilities (N, C, H, W) for normalised images (N, 3, H, W).

    `batch_size` caps the network inputs per call (images, flipped copies and windows alike); it
    changes speed and memory, not the result. None: whole images all at once, windows about a
    megapixel per call.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise SceneparseError(f"infer: expected images of shape (N, 3, H, W), got {tuple(images.shape)}")
    if mode not in ("whole", "slide"):
        raise SceneparseError(f"inference mode must be 'whole' or 'slide', got {mode!r}")
    if mode == "slide":
        if crop is None:
            raise SceneparseError("sliding-window inference needs a window size (--crop HxW)")
        stride = stride or default_stride(crop)
        if min(stride) < 1 or any(s > c for s, c in zip(stride, crop)):
            raise SceneparseError(f"sliding-window stride {tuple(stride)} must be 1 to the window size "
                                  f"{tuple(crop)}, or windows would leave gaps")
    if not scales or not all(0 < s <= MAX_SCALE for s in scales):  # also refuses nan
        raise SceneparseError(f"scales must be numbers above 0 and at most {MAX_SCALE}, got {tuple(scales)}")
    if batch_size is not None and batch_size < 1:
        raise SceneparseError(f"batch size must be at least 1, got {batch_size}")
    n, _, h, w = images.shape
    if max_size is not None:
        if max_size < 1:
            raise SceneparseError(f"max size must be a positive number of pixels, got {max_size}")
        if resize is None and max(h, w) > max_size:
            resize = max_size_shape(h, w, max_size)
    if resize is not None and tuple(resize) != (h, w):
        if len(resize) != 2 or min(resize) < 1:
            raise SceneparseError(f"resize must be two positive numbers (H, W), got {tuple(resize)}")
        x = F.interpolate(images, size=tuple(resize), mode="bilinear", align_corners=False)
        probs = infer(model, x, mode, crop, stride, scales, flip, batch_size)
        return F.interpolate(probs, size=(h, w), mode="bilinear", align_corners=False)
    total = None
    for scale in scales:
        size = (max(1, int(h * scale + 0.5)), max(1, int(w * scale + 0.5)))
        x = images if size == (h, w) else F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        if flip:
            x = torch.cat([x, x.flip(-1)])
        if mode == "whole":
            probs = _forward(model, x, batch_size)
        else:
            probs = _slide(model, x, tuple(crop), tuple(stride), batch_size)
        if flip:
            probs = probs[:n] + probs[n:].flip(-1)
        if size != (h, w):
            probs = F.interpolate(probs, size=(h, w), mode="bilinear", align_corners=False)
        total = probs if total is None else total + probs
    return total / (len(scales) * (2 if flip else 1))


def max_size_shape(h: int, w: int, max_size: int) -> tuple[int, int]:
    """(H, W) scaled so that the longer side is `max_size` (aspect ratio kept, rounded)."""
    scale = max_size / max(h, w)
    return max(1, int(h * scale + 0.5)), max(1, int(w * scale + 0.5))


def resolve_resize(value, stored) -> tuple[int, int] | None:
    """The `resize` to use: "auto" = `stored` (the model's photo size, from its checkpoint or ONNX
    metadata; None when it has none), "native" or None = each image as it is, else (H, W)."""
    if value == "auto":
        return tuple(int(v) for v in stored) if stored else None
    if value in (None, "native"):
        return None
    return tuple(int(v) for v in value)


def to_rgb_array(image) -> np.ndarray:
    """A path, PIL image or HxWx3 (HxW, HxWx1 grey; HxWx4 RGBA) uint8 array as an HxWx3 uint8 array."""
    if isinstance(image, (str, os.PathLike)):
        return read_image(image)
    if isinstance(image, Image.Image):
        array = np.asarray(image.convert("RGB"))
    elif isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise SceneparseError(f"image array must be uint8 (0..255), got {image.dtype}")
        if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):  # grey
            array = np.repeat(image.reshape(image.shape[:2] + (1,)), 3, axis=2)
        elif image.ndim == 3 and image.shape[2] in (3, 4):  # RGB; RGBA's alpha is dropped
            array = image[..., :3]
        else:
            raise SceneparseError(f"image array must be HxW, HxWx1, HxWx3 or HxWx4, got shape {image.shape}")
    else:
        raise SceneparseError(f"cannot read an image from a {type(image).__name__}: pass a path, PIL image or array")
    if array.size == 0:
        raise SceneparseError(f"image is empty ({array.shape[0]}x{array.shape[1]} pixels)")
    return array


class Segmenter:
    """A network plus what is needed to use it: class names, palette, normalisation, inference mode.

        seg = Segmenter.from_checkpoint("camvid")
        labels = seg.predict("street.png")                 # HxW int64 class indices
        labels, probs = seg.predict(photo, return_probs=True)  # probs: CxHxW float32
        many = seg.predict([a, b, c])                      # a list in, a list out

    `model` maps normalised (B, 3, h, w) tensors to logits: a torch module (channels_last) or an
    `OrtEngine`; `info` holds the model name, dataset and label set. The inference options
    (`mode`, `crop`, `stride`, `scales`, `flip`, `batch_size`, `resize`) are those of `infer`;
    `batch_size` also sets how many same-size images of a list go through together, and `resize`
    also takes "auto" (the model's stored photo size) or "native" in `from_checkpoint`/`from_onnx`;
    `max_size` caps the longer side the network sees (see `infer`).

    `predict_frames(frames)` segments a stream (video frames, a generator of arrays) lazily, in
    batches of `batch_size`, yielding one result per frame in order.
    """

    def __init__(self, model: Model, classes: Sequence[str], palette: Sequence[Sequence[int]],
                 mean: Sequence[float], std: Sequence[float], info: dict | None = None, **options):
        self.model = model
        self.classes = list(classes)
        self.palette = [tuple(int(v) for v in c) for c in palette]
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.info = dict(info or {})  # model name, dataset, label set
        self.options = {"mode": "whole", "crop": None, "stride": None, "scales": (1.0,), "flip": False,
                        "batch_size": None, "resize": None, "max_size": None}
        unknown = set(options) - set(self.options)
        if unknown:
            raise SceneparseError(f"unknown inference option(s): {', '.join(sorted(unknown))}")
        self.options.update(options)

    @classmethod
    def from_checkpoint(cls, path_or_name: str | os.PathLike | None = None, engine: str = "torch",
                        onnx_path: str | os.PathLike | None = None, threads: int | None = None,
                        precision: str = "f32", calibration: str | os.PathLike | None = None,
                        **options) -> "Segmenter":
        """Load a checkpoint (path or built-in name) and run it with `engine`: "torch", "openvino"
        (converted on the fly and cached), "onnxruntime"/"openvino" on `onnx_path` (an exported
        file), or "auto" (the fastest exact one here); see `load_network` for `precision`."""
        ckpt = load_checkpoint(path_or_name)
        model, engine = load_network(ckpt, engine, onnx_path, threads, precision, calibration)
        if model_file_classes(model, ckpt["classes"]) != ckpt["classes"]:
            raise SceneparseError(f"{onnx_path}: its classes differ from those of checkpoint "
                                  f"{path_or_name or DEFAULT_BUILTIN}; export it from that checkpoint")
        norm = ckpt["normalization"]
        info = {"model": ckpt["model"]["name"], "dataset": ckpt["dataset"].get("name", ""),
                "label_set": ckpt["dataset"].get("label_set", ""), "engine": engine}
        options["resize"] = resolve_resize(options.get("resize", "auto"), ckpt["dataset"].get("photo_size"))
        return cls(model, ckpt["classes"], ckpt["palette"], norm["mean"], norm["std"], info, **options)

    @classmethod
    def from_onnx(cls, path: str | os.PathLike, threads: int | None = None, engine: str = "onnxruntime",
                  precision: str = "f32", **options) -> "Segmenter":
        """Everything from an exported file (.onnx, or OpenVINO .xml) and its metadata; no checkpoint needed."""
        if engine == "torch":
            raise SceneparseError(f"{path}: --engine torch runs a checkpoint; run a file with --engine "
                                  f"onnxruntime, openvino or auto")
        model, engine = load_network(None, engine, path, threads, precision)
        meta = model.metadata
        if "classes" not in meta:
            raise SceneparseError(f"{path}: no sceneparse metadata (classes, palette, normalisation); "
                                  f"export it with `sceneparse export`")
        info = {**{k: meta.get(k, "") for k in ("model", "dataset", "label_set")}, "engine": engine}
        options["resize"] = resolve_resize(options.get("resize", "auto"), meta.get("photo_size"))
        return cls(model, meta["classes"], meta["palette"], meta["mean"], meta["std"], info, **options)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """Same-size HxWx3 uint8 arrays -> normalised float tensor (N, 3, H, W)."""
        x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255)
        return (x - self.mean) / self.std

    def infer(self, images: torch.Tensor) -> torch.Tensor:
        """Probabilities (N, C, H, W) of normalised images with this segmenter's inference options."""
        return infer(self.model, images, **self.options)

    def predict(self, image, return_probs: bool = False):
        """Class indices (HxW int64) of one image; a list (or NxHxWx3 array) gives a list (array) of results.

        With `return_probs`, return `(labels, probs)` with probs CxHxW float32 (per image).
        """
        if isinstance(image, np.ndarray) and image.ndim == 4:
            labels, probs = zip(*self._predict_many(list(image), return_probs))
            stacked = np.stack(labels)
            return (stacked, np.stack(probs)) if return_probs else stacked
        if isinstance(image, (list, tuple)):
            results = self._predict_many(list(image), return_probs)
            return results if return_probs else [labels for labels, _ in results]
        labels, probs = self._predict_many([image], return_probs)[0]
        return (labels, probs) if return_probs else labels

    def _predict_many(self, images: list, return_probs: bool) -> list[tuple[np.ndarray, np.ndarray | None]]:
        if return_probs:
            return list(self.predict_frames(images, return_probs=True))
        return [(labels, None) for labels in self.predict_frames(images)]

    def predict_frames(self, frames: Iterable, return_probs: bool = False,
                       batch_size: int | None = None) -> Iterator:
        """Class maps (HxW int64) of each frame of `frames`, in order; with `return_probs`,
        `(labels, probs)` pairs (probs CxHxW float32).

        Frames (HxWx3 uint8 arrays, PIL images or paths) are read lazily and go through the network
        `batch_size` at a time (default: the segmenter's `batch_size` option, else 1), so a
        generator of decoded video frames is never held in memory; a change of frame size starts a
        new batch. The results are the same as `predict` on each frame alone.
        """
        size = batch_size or self.options["batch_size"] or 1
        if size < 1:
            raise SceneparseError(f"batch size must be at least 1, got {size}")
        group: list[np.ndarray] = []
        for frame in frames:
            array = to_rgb_array(frame)
            if group and group[0].shape != array.shape:
                yield from self._frames_of(group, return_probs)
                group = []
            group.append(array)
            if len(group) == size:
                yield from self._frames_of(group, return_probs)
                group = []
        if group:
            yield from self._frames_of(group, return_probs)

    def _frames_of(self, group: list[np.ndarray], return_probs: bool) -> Iterator:
        probs = self.infer(self.preprocess(group))
        labels = class_map(probs).numpy()
        for i in range(len(group)):
            yield (labels[i], probs[i].numpy()) if return_probs else labels[i]


def class_map(probs: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """`probs.argmax(dim)` (int64, the first class on ties), computed class by class.

    On CPU, `argmax` over the class dimension of contiguous (N, C, H, W) probabilities reduces
    along a strided axis and was measured 4x slower (157 ms vs 38 ms for 11 classes at 720x1280 on
    one thread): at video sizes that is a tenth of a DABNet forward pass.
    """
    if probs.shape[dim] > 64 or probs.shape[dim] == 0:
        return probs.argmax(dim)
    best = probs.select(dim, 0).clone()
    labels = torch.zeros(best.shape, dtype=torch.int64)
    for c in range(1, probs.shape[dim]):
        p = probs.select(dim, c)
        labels.masked_fill_(p > best, c)
        torch.maximum(best, p, out=best)
    return labels
