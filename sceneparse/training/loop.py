"""The training loop: `train(cfg, out)`.

One iteration is one optimiser step (`accumulate` micro-batches). Data order and augmentation are
pure functions of (seed, epoch, index), the learning rate a pure function of the iteration, and
the checkpoint holds weights, optimiser and RNG state: so `--resume` continues a run exactly, bit
for bit on CPU, from the end of any iteration.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from sceneparse import distributed as dist
from sceneparse.checkpoint import TrainState, make_checkpoint, nonfinite_weights, save_checkpoint
from sceneparse.data import SegmentationDataset
from sceneparse.evaluate import evaluate_model
from sceneparse.models import build_model, load_backbone_weights
from sceneparse.training.config import TrainConfig, as_dict, save_config, validate
from sceneparse.training.ema import WeightAverage
from sceneparse.training.loader import build_datasets, make_loader
from sceneparse.training.losses import build_criterion, class_weights
from sceneparse.training.runlog import Progress, RunLog
from sceneparse.training.sampler import EpochSampler
from sceneparse.training.schedule import crop_at, learning_rate
from sceneparse.training.state import (StopFlag, check_output_dir, close_loader, data_error, last_good_checkpoint,
                                       previous_run, remove_previous_run, restore, resume_path)
from sceneparse.training.step import make_loss_fn
from sceneparse.utils import SceneparseError, os_error_reason, peak_rss_mb


@dataclass
class Run:
    """Everything one training run works with, built once by `_setup`."""

    cfg: TrainConfig
    out: Path
    device: torch.device
    train_ds: SegmentationDataset
    val_ds: SegmentationDataset | None
    model: nn.Module          # what trains (DistributedDataParallel under torchrun)
    net: nn.Module            # the plain network inside it
    ema: WeightAverage | None
    optimizer: torch.optim.Optimizer
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    sampler: EpochSampler
    iters_per_epoch: int
    total: int
    state: TrainState
    metrics: dict             # the last evaluation report
    probe: torch.Tensor | None = None   # one image of the last batch: are the weights' outputs finite?
    failure: str | None = None          # why a checkpoint was refused (diverged weights)

    @property
    def scored(self) -> nn.Module:
        """The weights evaluated and saved: the moving average when there is one."""
        return self.ema.model if self.ema else self.net


def train(cfg: TrainConfig, out: str | Path, resume: str | None = None, stop_after: int | None = None,
          time_limit: float | None = None, overwrite: bool = False) -> dict:
    """Train per `cfg` into `out` (checkpoints, log.csv, curves.png, config.yaml).

    `resume`: a last.pt to continue from, or "auto" for OUT/last.pt when it exists. Without it, a
    folder that already holds a run is refused unless `overwrite` (which removes that run's
    checkpoints and logs first). `stop_after` (an iteration) and `time_limit` (minutes) stop early
    with a last.pt to resume from.
    Returns {"iteration", "total", "interrupted", "stopped_by", "best_miou", "metrics", "elapsed"};
    `stopped_by` is None (finished), "stop_after", "time_limit" or "signal" (SIGINT/SIGTERM).
    """
    validate(cfg, "config")
    if stop_after is not None and stop_after < 0:
        raise SceneparseError(f"--stop-after {stop_after}: must be >= 0")
    if time_limit is not None and not time_limit > 0:
        raise SceneparseError(f"--time-limit {time_limit}: must be a positive number of minutes")
    out = Path(out)
    device = dist.init(cfg.device)
    try:
        found = dist.broadcast_object(previous_run(out) if dist.is_main() else None)
        if found and resume is None and not overwrite:
            raise SceneparseError(f"{out}: already holds a run ({', '.join(found[:4])}); continue it with "
                                  f"--resume auto, or start over with --overwrite")
        if found and resume is None and dist.is_main():
            remove_previous_run(out)
        run = _setup(cfg, out, device, resume)
        return _loop(run, stop_after, time_limit)
    except OSError as e:  # a write that failed mid-run: disk full, folder removed, permissions
        where = e.filename or out
        raise SceneparseError(f"{where}: write failed ({os_error_reason(e)}); the checkpoints already written "
                              f"are intact") from None
    finally:
        dist.cleanup()


def _loop(run: Run, stop_after: int | None, time_limit: float | None) -> dict:
    cfg, state, main = run.cfg, run.state, dist.is_main()
    world = dist.world_size()
    log = RunLog(run.out, state.iteration, enabled=main)
    if main:
        save_config(cfg, run.out / "config.yaml")
        print(f"training {cfg.model} on {cfg.dataset}/{cfg.train_split} ({len(run.train_ds)} images, "
              f"{len(run.train_ds.classes)} classes): {run.total} iterations, {run.iters_per_epoch} per epoch, "
              f"batch {cfg.batch_size}x{cfg.accumulate}x{world}, out {run.out}", file=sys.stderr)
    stop = StopFlag()
    progress = Progress(log, run.total, state.iteration, main, cfg.batch_size * cfg.accumulate * world,
                        cfg.log_interval, state.elapsed)
    last_save = time.time()
    it, requested, crop, loader, batches = state.iteration, None, None, None, None
    try:
        while it < run.total:
            epoch, start = divmod(it, run.iters_per_epoch)
            run.sampler.set_epoch(epoch, start * cfg.batch_size * cfg.accumulate)
            run.model.train()
            if crop_at(cfg, it, run.total) != crop:
                crop = crop_at(cfg, it, run.total)
                close_loader(loader)
                loader = make_loader(run.cfg, run.train_ds, run.sampler, crop, run.device)
                if cfg.crop_schedule:
                    progress.write(f"training crops {crop[0]}x{crop[1]} from iteration {it}")
            batches = iter(loader)
            for _ in range(start, run.iters_per_epoch):
                lr = learning_rate(cfg, it, run.total)
                loss = _step(run, batches, lr, it, epoch)
                it = state.iteration = it + 1
                progress.step(it, epoch, run.total, loss, lr)
                epoch_end = it % run.iters_per_epoch == 0 or it == run.total  # a last partial epoch ends too
                if epoch_end and run.val_ds is not None and (
                        (it // run.iters_per_epoch) % cfg.eval_interval == 0 or it == run.total):
                    started = time.time()
                    _validate(run, log, progress, epoch)
                    progress.pause(time.time() - started)
                if epoch_end or time.time() - last_save > 60 * cfg.checkpoint_minutes:
                    _save(run, "last.pt", progress.elapsed())
                    last_save = time.time()
                if cfg.early_stop and state.bad_evals >= cfg.early_stop:
                    progress.write(f"early stop: no better val mIoU in {cfg.early_stop} evaluations")
                    run.total = it
                out_of_time = time_limit is not None and time.time() - progress.start > 60 * time_limit
                reason = ("signal" if stop.signal is not None else "time_limit" if out_of_time
                          else "stop_after" if stop_after is not None and it >= stop_after else None)
                requested, failure = dist.broadcast_object((reason, run.failure))
                if failure:
                    raise SceneparseError(failure)
                if it >= run.total or requested or crop_at(cfg, it, run.total) != crop:
                    break
            if requested:
                break
    except KeyboardInterrupt:
        requested = "signal"
    finally:
        progress.close()
        stop.restore()
        close_loader(batches)
        close_loader(loader)
    interrupted = it < run.total
    if interrupted:
        requested = requested or "signal"
        _save(run, "last.pt", progress.elapsed())
        if dist.broadcast_object(run.failure):
            raise SceneparseError(run.failure)
        if main:
            how = {"stop_after": " (--stop-after)", "time_limit": " (--time-limit)"}.get(requested, "")
            print(f"stopped at iteration {it}/{run.total}{how}; continue with --resume {run.out / 'last.pt'}",
                  file=sys.stderr)
    log.plot()  # also for runs without validation, which otherwise never draw it
    log.close()
    elapsed = progress.elapsed()
    if main and not interrupted:
        best = (f"best val mIoU {state.best_miou:.4f} at iteration {state.best_iteration}"
                if state.best_iteration >= 0 else "no validation (no val split)")
        print(f"done: {it} iterations in {elapsed / 60:.1f} min; {best}; peak memory {peak_rss_mb():.0f} MiB; "
              f"checkpoints in {run.out}", file=sys.stderr)
    return {"iteration": it, "total": run.total, "interrupted": interrupted,
            "stopped_by": requested if interrupted else None, "best_miou": state.best_miou,
            "metrics": run.metrics, "elapsed": elapsed}


def _step(run: Run, batches, lr: float, it: int, epoch: int) -> float:
    """One optimiser step over `accumulate` micro-batches; returns the loss (mean over processes)."""
    cfg = run.cfg
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    run.optimizer.zero_grad(set_to_none=True)
    step_loss = torch.zeros((), device=run.device)
    for _ in range(cfg.accumulate):
        try:
            images, masks = next(batches)
        except Exception as e:  # a data worker's error, re-raised here as one line naming the file
            error = data_error(e)
            if error is None:
                raise
            raise error from None
        images, masks = images.to(run.device, non_blocking=True), masks.to(run.device, non_blocking=True)
        try:
            loss = run.loss_fn(images, masks) / cfg.accumulate
        except ValueError as e:
            if "more than 1 value per channel" not in str(e):
                raise
            raise SceneparseError(f"batch_size {cfg.batch_size} is too small for {cfg.model}: its BatchNorm "
                                  f"after global pooling needs >= 2 images per process") from None
        loss.backward()
        step_loss += loss.detach().float()
    step_loss = dist.all_reduce_sum(step_loss) / dist.world_size()
    if not torch.isfinite(step_loss):
        raise SceneparseError(f"loss became {step_loss.item()} at iteration {it} (epoch {epoch}); stopped without "
                              f"saving. {last_good_checkpoint(run.out)} Lower the lr or check the data.")
    run.probe = images[:1, :, :64, :64].detach()  # a corner is enough to see non-finite outputs, and cheap
    run.optimizer.step()
    if run.ema:
        run.ema.update(it)
    return step_loss.item()


def _validate(run: Run, log: RunLog, progress: Progress, epoch: int) -> None:
    """Score the val split; keep best.pt at the best val mIoU."""
    cfg, state = run.cfg, run.state
    report = evaluate_model(run.scored, run.val_ds, device=run.device, mode=cfg.eval_mode,
                            crop=tuple(cfg.eval_crop) or None, class_names=run.train_ds.classes)
    run.model.train()
    run.metrics = report
    improved = report["miou"] > state.best_miou
    if improved:
        state.best_miou, state.best_iteration, state.bad_evals = report["miou"], state.iteration, 0
    else:
        state.bad_evals += 1
    log.write({"iteration": state.iteration, "epoch": epoch, "val_miou": report["miou"],
               "val_pixel_acc": report["pixel_acc"], "val_mean_class_acc": report["mean_class_acc"],
               "elapsed_s": progress.elapsed()})
    progress.write(f"[iter {state.iteration} epoch {epoch + 1}] val mIoU {report['miou']:.4f}  pixel acc "
                   f"{report['pixel_acc']:.4f}  mean class acc {report['mean_class_acc']:.4f}  (best "
                   f"{state.best_miou:.4f} at iter {state.best_iteration})")
    log.plot()
    if improved:
        _save(run, "best.pt", progress.elapsed())


def _diverged(run: Run) -> str | None:
    """Why the weights about to be saved are unusable (NaN/inf weights, or non-finite outputs on
    an image of the last batch), or None. Evaluation mode: no state or random number changes."""
    bad = nonfinite_weights(run.scored.state_dict()) or (nonfinite_weights(run.net.state_dict()) if run.ema else [])
    if bad:
        return f"weight {bad[0]} holds NaN or infinity"
    if run.probe is None:
        return None
    model = run.scored
    was_training = model.training
    try:
        with torch.no_grad():
            output = model.eval()(run.probe)
    finally:
        model.train(was_training)
    output = output[0] if isinstance(output, tuple) else output
    return None if bool(torch.isfinite(output).all()) else "its outputs are not finite"


def _save(run: Run, name: str, elapsed: float) -> None:
    """Write a checkpoint (main process only): the scored weights, the metrics and the train state.
    Weights that diverged are never written: `run.failure` says why, and the loop stops."""
    if not dist.is_main() or run.failure:
        return
    reason = _diverged(run)
    if reason:
        run.failure = (f"training diverged by iteration {run.state.iteration}: {reason}; {name} was not written. "
                       f"{last_good_checkpoint(run.out)} Lower the lr or check the data.")
        return
    cfg, ds = run.cfg, run.train_ds
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    state = dataclasses.replace(run.state, epoch=run.state.iteration // run.iters_per_epoch, elapsed=elapsed,
                                optimizer=run.optimizer.state_dict(), rng=rng,
                                raw_state_dict=run.net.state_dict() if run.ema else None)
    ckpt = make_checkpoint(cfg.model, len(ds.classes), cfg.model_options, run.scored.state_dict(), ds.classes,
                           ds.palette, dataset=cfg.dataset, label_set=getattr(ds, "label_set", "") or "",
                           config=as_dict(cfg), metrics=run.metrics, train_state=state.to_dict(),
                           photo_size=getattr(ds, "photo_size", None))
    save_checkpoint(ckpt, run.out / name)


def _setup(cfg: TrainConfig, out: Path, device: torch.device, resume: str | None) -> Run:
    """Data, network, optimiser and loss, and the state of a resumed run."""
    world, rank = dist.world_size(), dist.rank()
    torch.manual_seed(cfg.seed)
    train_ds, val_ds = build_datasets(cfg)
    model = build_model(cfg.model, len(train_ds.classes), **cfg.model_options)
    if cfg.backbone_weights:
        load_backbone_weights(model, cfg.backbone_weights)
    if dist.is_main():
        check_output_dir(out, model)  # also removes stale temp files of a killed run
    iters_per_epoch = len(train_ds) // world // (cfg.batch_size * cfg.accumulate)
    if iters_per_epoch < 1:
        raise SceneparseError(f"{cfg.root}: split '{cfg.train_split}' has {len(train_ds)} images, fewer than "
                              f"batch_size x accumulate x processes = {cfg.batch_size * cfg.accumulate * world}")
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(cfg, model)
    weights = class_weights(cfg, train_ds)
    criterion = build_criterion(cfg, None if weights is None else weights.to(device))
    state, metrics, averaged = TrainState(), {}, None
    path = resume_path(resume, out)
    if path is not None:
        state, metrics, averaged = restore(path, model, optimizer, cfg)
    ema = WeightAverage(model, cfg.ema_decay) if cfg.ema_decay else None
    if ema and averaged is not None:
        ema.model.load_state_dict(averaged)
    net = model
    if world > 1:
        if device.type == "cuda" and cfg.sync_bn:
            model = net = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                    else None)
    loss_fn = make_loss_fn(model, criterion, aux_weight=cfg.aux_weight, channels_last=cfg.channels_last,
                           compile=cfg.compile, bf16=cfg.bf16)
    sampler = EpochSampler(len(train_ds), iters_per_epoch * cfg.batch_size * cfg.accumulate, cfg.seed, rank, world)
    return Run(cfg, out, device, train_ds, val_ds, model, net, ema, optimizer, loss_fn, sampler, iters_per_epoch,
               cfg.iterations or cfg.epochs * iters_per_epoch, state, metrics)


def build_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
