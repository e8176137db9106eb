"""Saving and resuming a run, and stopping it cleanly: an interrupted run continues bit for bit."""
from __future__ import annotations

import shutil
import signal
import sys
from pathlib import Path

import torch
from torch import nn

from sceneparse import distributed as dist
from sceneparse.checkpoint import TrainState, load_checkpoint
from sceneparse.training.config import TrainConfig, as_dict
from sceneparse.utils import SceneparseError, writable_folder

RUN_FILES = ("last.pt", "best.pt", "log.csv", "curves.png", "config.yaml")  # what a run writes into OUT


def previous_run(out: Path) -> list[str]:
    """What of an earlier run (or anything else) `out` holds: every entry but hidden temp files."""
    if not out.is_dir():
        return []
    names = sorted(p.name for p in out.iterdir() if not (p.name.startswith(".") and p.name.endswith(".tmp"))
                   and p.name != ".sceneparse_write_test")
    return sorted(names, key=lambda n: n not in RUN_FILES)  # the run's own files first


def remove_previous_run(out: Path) -> None:
    """`--overwrite`: remove the earlier run's checkpoints and logs (other files are left alone)."""
    for name in RUN_FILES:
        if (out / name).is_file():
            (out / name).unlink()


def data_error(e: Exception) -> SceneparseError | None:
    """The one-line error for a failure to load a batch, or None for a bug (keep its traceback).

    A DataLoader worker's exception arrives as its type with the worker's whole traceback as the
    message; the last line of that traceback is the original one-line message."""
    text = str(e)
    if isinstance(e, SceneparseError):
        if "Original Traceback" in text:
            last = [line for line in text.strip().splitlines() if line.strip()][-1]
            text = last.split("SceneparseError: ", 1)[-1]
        return SceneparseError(text)
    if isinstance(e, RuntimeError) and "DataLoader worker" in text:
        first = text.strip().splitlines()[0]
        return SceneparseError(f"a data loading worker died ({first[:160]}); out of memory? try 'workers: 0' "
                               f"or a smaller batch_size")
    return None


def close_loader(loader) -> None:
    """Stop a DataLoader's (or its iterator's) worker processes now. Left to the garbage
    collector after an error, workers that ignore SIGTERM (see `ignore_stop_signals`) keep the
    interpreter from exiting."""
    if loader is None:
        return
    iterator = getattr(loader, "_iterator", None) or loader
    shutdown = getattr(iterator, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()


def check_output_dir(out: Path, model: nn.Module) -> None:
    """Fail before training, not hours later, when checkpoints cannot be written; remove the
    stale temp files of a run killed mid-write."""
    writable_folder(out, "--out")
    need = 4 * sum(p.numel() for p in model.parameters()) * 3 * 3  # weights + optimiser, last + best + temp
    free = shutil.disk_usage(out).free
    if free < need:
        raise SceneparseError(f"{out}: only {free / 2**20:.0f} MiB free, checkpoints need about "
                              f"{need / 2**20:.0f} MiB")


class StopFlag:
    """Turns SIGINT/SIGTERM into a flag the loop checks, so it can write last.pt and exit cleanly."""

    def __init__(self):
        self.signal = None
        self._old = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass

    def _handle(self, signum, frame):
        self.signal = signum

    def restore(self) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def ignore_stop_signals(_worker_id: int) -> None:
    """Data workers ignore Ctrl-C and SIGTERM sent to the whole process group (a terminal, `timeout`,
    a cluster scheduler): the main process alone stops, writes last.pt and then shuts them down. A
    worker killed first would make the main process raise from the middle of a step instead."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


def resume_path(resume: str | None, out: Path) -> Path | None:
    """The checkpoint `--resume` names: a path, or "auto" for OUT/last.pt when it exists."""
    if resume is None:
        return None
    if resume == "auto":
        path = out / "last.pt"
        return path if path.is_file() else None
    return Path(resume)


def restore(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
            cfg: TrainConfig) -> tuple[TrainState, dict, dict | None]:
    """Load weights, optimiser and RNG state; returns the run's state, its last metrics and the
    averaged weights (None when the checkpoint has none: the average then starts from the weights)."""
    ckpt = load_checkpoint(path)
    if ckpt.get("train_state") is None:
        raise SceneparseError(f"{path}: has no training state (a shipped or exported model?); cannot resume")
    state = TrainState.from_dict(ckpt["train_state"])
    if ckpt["model"]["name"] != cfg.model:
        raise SceneparseError(f"{path}: was trained as {ckpt['model']['name']}, the config says {cfg.model}")
    differs = sorted(k for k, v in as_dict(cfg).items() if ckpt.get("config", {}).get(k, v) != v)
    if differs and dist.is_main():
        print(f"resuming with changed config keys: {', '.join(differs)}", file=sys.stderr)
    averaged = ckpt["state_dict"] if state.raw_state_dict is not None else None
    try:
        model.load_state_dict(state.raw_state_dict if averaged is not None else ckpt["state_dict"])
        optimizer.load_state_dict(state.optimizer)
    except (RuntimeError, ValueError, KeyError) as e:
        raise SceneparseError(f"{path}: does not fit this model/optimiser ({str(e).splitlines()[0]})") from None
    torch.set_rng_state(state.rng["torch"])
    if "cuda" in state.rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state.rng["cuda"])
    if dist.is_main():
        print(f"resumed from {path} at iteration {state.iteration}", file=sys.stderr)
    state.raw_state_dict = None  # the live weights are in the model now
    return state, ckpt.get("metrics", {}), averaged


def last_good_checkpoint(out: Path) -> str:
    """The sentence naming the checkpoint to go back to: only one that exists and loads (finite)."""
    for name in ("last.pt", "best.pt"):
        path = out / name
        if path.is_file():
            try:
                iteration = (load_checkpoint(path).get("train_state") or {}).get("iteration", "?")
            except SceneparseError:
                continue
            return f"Last good checkpoint: {path} (iteration {iteration})."
    return "No checkpoint was written before it."
