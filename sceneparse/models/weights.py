"""ImageNet backbone weights: load a torchvision state dict from a local file, or fetch one on request.

Nothing downloads implicitly. `sceneparse weights fetch NAME` downloads torchvision's published
file into the cache folder (default `~/.cache/sceneparse`, or `$SCENEPARSE_CACHE`), verifies the
SHA-256 prefix that torchvision embeds in the file name, and writes atomically. A config can then
say `backbone_weights: imagenet`, which `load_backbone_weights` resolves to that cached file.
The cache uses torchvision's file names, so `--cache ~/.cache/torch/hub/checkpoints` reuses files
torchvision already downloaded.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn
from tqdm import tqdm

from sceneparse.models.resnet import ARCHS as RESNETS, ResNet
from sceneparse.models.vgg import CONFIGS as VGGS, VGG
from sceneparse.utils import SceneparseError, atomic_path

IGNORED_PREFIXES = ("fc.", "classifier.")  # the ImageNet classifiers; every other key must fit


class Published(NamedTuple):
    url: str
    sha256: str  # prefix, as embedded in torchvision's file name

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


_BASE = "https://download.pytorch.org/models/"
IMAGENET = {  # torchvision's IMAGENET1K_V1 weights
    "resnet18": Published(_BASE + "resnet18-f37072fd.pth", "f37072fd"),
    "resnet34": Published(_BASE + "resnet34-b627a593.pth", "b627a593"),
    "resnet50": Published(_BASE + "resnet50-0676ba61.pth", "0676ba61"),
    "resnet101": Published(_BASE + "resnet101-63fe2227.pth", "63fe2227"),
    "vgg16_bn": Published(_BASE + "vgg16_bn-6c64b313.pth", "6c64b313"),
    "vgg19": Published(_BASE + "vgg19-dcbb9e9d.pth", "dcbb9e9d"),
}


def default_cache() -> Path:
    return Path(os.environ.get("SCENEPARSE_CACHE") or Path.home() / ".cache" / "sceneparse")


def imagenet_path(arch: str, cache: str | os.PathLike | None = None) -> Path:
    """The cached ImageNet file for `arch`; a one-line error naming the fetch command if it is absent."""
    if arch not in IMAGENET:
        raise SceneparseError(f"no published ImageNet weights for '{arch}' (available: {', '.join(IMAGENET)})")
    path = Path(cache or default_cache()) / IMAGENET[arch].filename
    if not path.is_file():
        raise SceneparseError(f"ImageNet weights for {arch} are not downloaded ({path} missing); "
                              f"run `sceneparse weights fetch {arch}`" + (f" --cache {cache}" if cache else ""))
    return path


# ---------------------------------------------------------------- loading

def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise SceneparseError(f"{path}: backbone weights file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for garbage, truncated or foreign files
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise SceneparseError(f"{path}: not a readable PyTorch weights file ({first})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        # A training checkpoint (e.g. sceneparse's): use the weights of its backbone.
        state = {k.removeprefix("backbone."): v for k, v in state["state_dict"].items() if k.startswith("backbone.")}
        if not state:
            raise SceneparseError(f"{path}: a training checkpoint without backbone.* weights")
    if not isinstance(state, dict) or not state or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        kind = type(state).__name__ if not isinstance(state, dict) else "dict without tensors"
        raise SceneparseError(f"{path}: not a state dict (found a {kind}); expected torchvision ResNet/VGG weights")
    return state


def _keys(module: nn.Module) -> set[str]:
    return {k for k in module.state_dict() if not k.endswith("num_batches_tracked")}


def _guess_arch(keys: set[str]) -> str | None:
    """Which torchvision backbone has exactly these keys (built on the meta device: no memory, no time)."""
    with torch.device("meta"):
        candidates = [(a, ResNet(a)) for a in RESNETS] + [(a, VGG(a)) for a in VGGS]
    return next((arch for arch, m in candidates if _keys(m) == keys), None)


def _short(keys: list[str], limit: int = 4) -> str:
    more = f", ... (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_backbone_weights(model: nn.Module, path: str | os.PathLike, cache: str | os.PathLike | None = None) -> None:
    """Load a torchvision ResNet/VGG state dict into `model.backbone`, strict on every backbone key.

    `path` is a local file, or "imagenet" for the file `sceneparse weights fetch` cached for the
    model's backbone. Only the ImageNet classifier (`fc.*`, `classifier.*`) is ignored; any other
    missing, unexpected or mis-shaped key is a one-line SceneparseError naming the keys.
    """
    backbone = getattr(model, "backbone", None)
    arch = getattr(backbone, "arch", None)
    if arch is None:
        raise SceneparseError(f"{type(model).__name__} has no torchvision ResNet/VGG backbone to load weights into")
    deep_stem = getattr(backbone, "deep_stem", False)
    if str(path) == "imagenet":
        if deep_stem:
            raise SceneparseError(f"backbone_weights: imagenet: torchvision has no weights for the deep stem of "
                                  f"{arch}; set deep_stem: false or give a file")
        path = imagenet_path(arch, cache)
    path = Path(path)
    state = {k: v for k, v in _read_state_dict(path).items() if not k.startswith(IGNORED_PREFIXES)}
    expected = backbone.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        found = _guess_arch({k for k in state if not k.endswith("num_batches_tracked")})
        if found and found != arch:
            problem = f"it holds {found} weights, the model's backbone is {arch}"
        else:
            problem = f"missing {len(missing)} key(s) [{_short(missing)}], unexpected {len(unexpected)} key(s) " \
                      f"[{_short(unexpected)}]"
            if deep_stem:
                problem += " (this backbone has a deep stem, which torchvision weights do not)"
        raise SceneparseError(f"{path}: does not fit the {arch} backbone: {problem}")
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}" for k in state
              if state[k].shape != expected[k].shape]
    if shapes:
        raise SceneparseError(f"{path}: does not fit the {arch} backbone: shape mismatch for {_short(shapes, 3)}")
    backbone.load_state_dict(state, strict=False)  # strict=False only tolerates absent num_batches_tracked


# ---------------------------------------------------------------- fetching

def _download(url: str, dest: Path, label: str) -> str:
    """Stream `url` into `dest` with a progress bar; return the SHA-256 hex digest."""
    digest = hashlib.sha256()
    received = 0
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as f:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=label, disable=None) as bar:
                while chunk := response.read(1 << 20):
                    f.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except http.client.IncompleteRead as e:
        raise SceneparseError(f"{url}: transfer truncated after {received + len(e.partial)} bytes; "
                              f"nothing saved") from None
    except urllib.error.HTTPError as e:
        raise SceneparseError(f"{url}: download failed: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise SceneparseError(f"{url}: download failed ({e.reason}); nothing saved") from None
    except (OSError, ValueError, http.client.HTTPException) as e:
        raise SceneparseError(f"{url}: download failed ({e}); nothing saved") from None
    if total is not None and received != total:
        raise SceneparseError(f"{url}: transfer truncated ({received} of {total} bytes); nothing saved")
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(name: str, cache: str | os.PathLike | None = None, url: str | None = None) -> Path:
    """Download torchvision's ImageNet weights for `name` into `cache`, verified; return the file.

    A file already in the cache with the right checksum is kept. `url` overrides the address
    (a mirror); the checksum must still be torchvision's.
    """
    if name not in IMAGENET:
        raise SceneparseError(f"unknown weights '{name}' (valid: {', '.join(IMAGENET)})")
    published = IMAGENET[name]
    dest = Path(cache or default_cache()) / published.filename
    if dest.is_file() and _sha256(dest).startswith(published.sha256):
        return dest
    url = url or published.url
    with atomic_path(dest) as tmp:
        digest = _download(url, tmp, name)
        if not digest.startswith(published.sha256):
            raise SceneparseError(f"{url}: checksum mismatch (sha256 {digest[:16]}..., expected "
                                  f"{published.sha256}...); nothing saved")
    return dest
