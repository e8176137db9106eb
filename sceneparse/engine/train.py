"""`sceneparse train`: the training loop.

One iteration is one optimiser step (`accumulate` micro-batches). Data order and augmentation are
pure functions of (seed, epoch, index), the learning rate a pure function of the iteration, and
the checkpoint holds weights, optimiser and RNG state: so `--resume` continues a run exactly, bit
for bit on CPU, from the end of any iteration.
"""
from __future__ import annotations

import copy
import csv
import math
import shutil
import signal
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Sampler

from sceneparse.engine import distributed as dist
from sceneparse.engine.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
from sceneparse.engine.config import TrainConfig, as_dict, load_config, save_config
from sceneparse.engine.fast import make_loss_fn
from sceneparse.utils import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD, SceneparseError, atomic_path, peak_rss_mb

LOG_FIELDS = ["iteration", "epoch", "loss", "lr", "images_per_s", "elapsed_s", "peak_rss_mb",
              "val_miou", "val_pixel_acc", "val_mean_class_acc"]


class EpochSampler(Sampler):
    """Shuffled indices of one epoch, paired with a per-sample augmentation seed.

    Like DistributedSampler, each process takes every world-th item of one shared permutation;
    unlike it, the permutation and the seeds depend only on (seed, epoch), and `start` skips the
    items already consumed, so a resumed run sees exactly the batches it would have seen.
    """

    def __init__(self, size: int, per_epoch: int, seed: int, rank: int = 0, world: int = 1):
        self.size, self.per_epoch, self.seed, self.rank, self.world = size, per_epoch, seed, rank, world
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.size, generator=g).tolist()
        mine = order[self.rank::self.world][: self.per_epoch]
        for index in mine[self.start:]:
            yield index, (self.seed * 1_000_003 + self.epoch) * 10_000_019 + index

    def __len__(self) -> int:
        return self.per_epoch - self.start


def learning_rate(cfg: TrainConfig, iteration: int, total: int) -> float:
    """`poly`: decay (power 0.9 in the PSPNet paper) after a linear warm-up of `warmup_iters`.
    `onecycle`: a cosine rise from lr/25 to lr over the first 30% of iterations, then a cosine fall
    to lr/250,000 (the shape and defaults of PyTorch's OneCycleLR; `warmup_iters` is not used)."""
    if cfg.lr_schedule == "onecycle":
        start, end = cfg.lr / 25, cfg.lr / 25 / 1e4
        rise = max(1, round(0.3 * total))
        if iteration < rise:
            return start + (cfg.lr - start) * (1 - math.cos(math.pi * iteration / rise)) / 2
        t = min(1.0, (iteration - rise) / max(1, total - rise))
        return end + (cfg.lr - end) * (1 + math.cos(math.pi * t)) / 2
    lr = cfg.lr * (1 - min(iteration, total - 1) / total) ** cfg.poly_power
    if iteration < cfg.warmup_iters:
        lr *= (iteration + 1) / cfg.warmup_iters
    return lr


def crop_at(cfg: TrainConfig, iteration: int, total: int) -> tuple[int, int]:
    """The training crop at `iteration`: the first `crop_schedule` stage not yet over, else crop_size."""
    for until, h, w in cfg.crop_schedule:
        if iteration < until * total:
            return int(h), int(w)
    return tuple(cfg.crop_size)


def train_transform_for(cfg: TrainConfig, crop: tuple[int, int]):
    from sceneparse.data.transforms import train_transform

    return train_transform(crop_size=crop, scale=tuple(cfg.scale), flip=cfg.flip, jitter=cfg.jitter,
                           mean=IMAGENET_MEAN, std=IMAGENET_STD)


def build_datasets(cfg: TrainConfig):
    from sceneparse.data import build_dataset
    from sceneparse.data.transforms import eval_transform

    options = dict(cfg.dataset_options)
    if cfg.label_set:
        options["label_set"] = cfg.label_set
    train_tf = train_transform_for(cfg, tuple(cfg.crop_size))
    val_tf = eval_transform(size=tuple(cfg.eval_size) if cfg.eval_size else None,
                            mean=IMAGENET_MEAN, std=IMAGENET_STD)
    train_ds = build_dataset(cfg.dataset, cfg.root, cfg.train_split, transform=train_tf, cache=cfg.cache,
                             **options)
    val_ds = None
    if cfg.val_split:
        val_ds = build_dataset(cfg.dataset, cfg.root, cfg.val_split, transform=val_tf, cache=cfg.cache,
                               **options)
    return train_ds, val_ds


def class_weights(cfg: TrainConfig, train_ds) -> torch.Tensor | None:
    """None, SegNet's median-frequency weights computed on the train split, or weights from a file."""
    if cfg.class_weights == "none":
        return None
    from sceneparse.data.commands import class_statistics, load_weights

    if cfg.class_weights == "median_freq":
        weights = class_statistics(train_ds)["weights"]
    else:
        weights = load_weights(cfg.class_weights, len(train_ds.classes))
    return torch.tensor(weights, dtype=torch.float32)


def build_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


class HardPixelLoss(nn.Module):
    """Online hard example mining: cross-entropy averaged over the `keep` fraction of labelled
    pixels with the largest loss, so easy road and sky pixels stop drowning the rare classes."""

    def __init__(self, keep: float, weight: torch.Tensor | None = None, label_smoothing: float = 0.0):
        super().__init__()
        self.keep = keep
        self.ce = nn.CrossEntropyLoss(weight=weight, ignore_index=IGNORE_INDEX, reduction="none",
                                      label_smoothing=label_smoothing)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        losses = self.ce(logits, target)[target != IGNORE_INDEX]
        if losses.numel() == 0:
            return logits.sum() * 0.0  # nothing labelled: zero loss that still has a graph
        k = max(1, int(self.keep * losses.numel()))
        return losses.topk(k, sorted=False).values.mean()


def build_criterion(cfg: TrainConfig, weights: torch.Tensor | None) -> nn.Module:
    if cfg.ohem_keep and cfg.ohem_keep < 1:
        return HardPixelLoss(cfg.ohem_keep, weights, cfg.label_smoothing)
    return nn.CrossEntropyLoss(weight=weights, ignore_index=IGNORE_INDEX, label_smoothing=cfg.label_smoothing)


class WeightAverage:
    """Exponential moving average of a model's floating-point parameters and buffers (BatchNorm
    statistics included; integer buffers are copied). The decay ramps up as min(decay,
    (1 + step) / (10 + step)) so that the early, random weights fade quickly."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self._pairs = list(zip(self.model.state_dict().values(), model.state_dict().values()))

    @torch.no_grad()
    def update(self, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        for avg, now in self._pairs:
            if avg.is_floating_point():
                avg.lerp_(now, 1 - decay)
            else:
                avg.copy_(now)


def check_output_dir(out: Path, model: nn.Module) -> None:
    """Fail before training, not hours later, when checkpoints cannot be written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / ".write_test") as tmp:
            tmp.write_bytes(b"ok")
        (out / ".write_test").unlink()
    except OSError as e:
        raise SceneparseError(f"{out}: output folder is not writable ({e.strerror or e})") from None
    need = 4 * sum(p.numel() for p in model.parameters()) * 3 * 3  # weights + optimiser, last + best + temp
    free = shutil.disk_usage(out).free
    if free < need:
        raise SceneparseError(f"{out}: only {free / 2**20:.0f} MiB free, checkpoints need about "
                              f"{need / 2**20:.0f} MiB")


def read_log(path: Path, upto: int = 10**12) -> list[dict]:
    """The rows of a run's log.csv up to iteration `upto`, numbers parsed, blanks as None."""
    if not path.is_file():
        return []

    def value(key: str, text: str | None):
        if text in ("", None):
            return None
        return int(float(text)) if key in ("iteration", "epoch") else float(text)

    with path.open(newline="") as f:
        rows = [{k: value(k, v) for k, v in r.items()} for r in csv.DictReader(f)]
    return [r for r in rows if r["iteration"] <= upto]


class RunLog:
    """log.csv (one row per `log_interval` iterations and per evaluation), TensorBoard, curves.png."""

    def __init__(self, out: Path, start_iteration: int, enabled: bool):
        self.out, self.enabled = out, enabled
        self.rows = read_log(out / "log.csv", start_iteration) if enabled else []
        self.tb = None
        if not enabled:
            return
        with atomic_path(out / "log.csv") as tmp, tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, LOG_FIELDS)
            writer.writeheader()
            writer.writerows([{k: ("" if v is None else v) for k, v in r.items()} for r in self.rows])
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tensorboard"), purge_step=start_iteration)
        except (ImportError, ModuleNotFoundError):
            self.tb = None

    def write(self, row: dict) -> None:
        if not self.enabled:
            return
        self.rows.append(row)
        with (self.out / "log.csv").open("a", newline="") as f:
            csv.DictWriter(f, LOG_FIELDS).writerow({k: row.get(k, "") for k in LOG_FIELDS})
        if self.tb is not None:
            for key in ("loss", "lr", "images_per_s", "val_miou", "val_pixel_acc"):
                if row.get(key) not in (None, ""):
                    self.tb.add_scalar(key, row[key], int(row["iteration"]))

    def plot(self) -> None:
        if self.enabled:
            from sceneparse.viz import plot_curves

            plot_curves(self.rows, self.out / "curves.png")

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


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


def _ignore_stop_signals(_worker_id: int) -> None:
    """Data workers ignore Ctrl-C and SIGTERM sent to the whole process group (a terminal, `timeout`,
    a cluster scheduler): the main process alone stops, writes last.pt and then shuts them down. A
    worker killed first would make the main process raise from the middle of a step instead."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


def run_train(args) -> int:
    cfg = load_config(args.config, args.set)
    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    result = train(cfg, out, resume=args.resume, stop_after=args.stop_after, time_limit=args.time_limit)
    return 130 if result.get("interrupted") else 0


def train(cfg: TrainConfig, out: str | Path, resume: str | None = None, stop_after: int | None = None,
          time_limit: float | None = None) -> dict:
    """Train per `cfg` into `out`; returns {"best_miou", "iteration", "interrupted", ...}."""
    out = Path(out)
    device = dist.init(cfg.device)
    try:
        return _train(cfg, out, device, resume, stop_after, time_limit)
    finally:
        dist.cleanup()


def _train(cfg: TrainConfig, out: Path, device: torch.device, resume: str | None,
           stop_after: int | None, time_limit: float | None) -> dict:
    from sceneparse.engine.evaluate import evaluate_model
    from sceneparse.models import build_model, load_backbone_weights

    main = dist.is_main()
    world, rank = dist.world_size(), dist.rank()
    torch.manual_seed(cfg.seed)
    train_ds, val_ds = build_datasets(cfg)
    num_classes = len(train_ds.classes)
    model = build_model(cfg.model, num_classes, **cfg.model_options)
    if cfg.backbone_weights:
        load_backbone_weights(model, cfg.backbone_weights)
    if main:
        check_output_dir(out, model)
    per_epoch_samples = len(train_ds) // world
    iters_per_epoch = per_epoch_samples // (cfg.batch_size * cfg.accumulate)
    if iters_per_epoch < 1:
        raise SceneparseError(f"{cfg.root}: split '{cfg.train_split}' has {len(train_ds)} images, fewer than "
                              f"batch_size x accumulate x processes = {cfg.batch_size * cfg.accumulate * world}")
    total = cfg.iterations or cfg.epochs * iters_per_epoch
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(cfg, model)
    weights = class_weights(cfg, train_ds)
    criterion = build_criterion(cfg, None if weights is None else weights.to(device))

    state = {"iteration": 0, "best_miou": -1.0, "best_iteration": -1, "bad_evals": 0, "elapsed": 0.0,
             "metrics": {}}
    resume_path = _resume_path(resume, out)
    averaged = None
    if resume_path is not None:
        state, averaged = _restore(resume_path, model, optimizer, cfg, state)
    ema = WeightAverage(model, cfg.ema_decay) if cfg.ema_decay else None
    if ema and averaged is not None:
        ema.model.load_state_dict(averaged)
    if world > 1:
        if device.type == "cuda" and cfg.sync_bn:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                    else None)
    net = model.module if world > 1 else model
    scored = ema.model if ema else net  # the weights evaluated and saved
    loss_fn = make_loss_fn(model, criterion, aux_weight=cfg.aux_weight, channels_last=cfg.channels_last,
                           compile=cfg.compile, bf16=cfg.bf16)

    sampler = EpochSampler(len(train_ds), iters_per_epoch * cfg.batch_size * cfg.accumulate, cfg.seed,
                           rank, world)

    def make_loader(crop: tuple[int, int]) -> DataLoader:
        """A loader of `crop`-sized samples; rebuilt (new workers) when crop_schedule moves on."""
        train_ds.transform = train_transform_for(cfg, crop)
        return DataLoader(train_ds, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.workers,
                          drop_last=True, pin_memory=device.type == "cuda", persistent_workers=cfg.workers > 0,
                          generator=torch.Generator().manual_seed(cfg.seed), worker_init_fn=_ignore_stop_signals)

    log = RunLog(out, state["iteration"], enabled=main)
    if main:
        save_config(cfg, out / "config.yaml")
        print(f"training {cfg.model} on {cfg.dataset}/{cfg.train_split} ({len(train_ds)} images, "
              f"{num_classes} classes): {total} iterations, {iters_per_epoch} per epoch, batch "
              f"{cfg.batch_size}x{cfg.accumulate}x{world}, out {out}", file=sys.stderr)

    photo_size = getattr(train_ds, "photo_size", None)  # read once, not at every save

    def checkpoint(name: str, metrics: dict) -> None:
        if not main:
            return
        train_state = {
            "iteration": state["iteration"], "epoch": state["iteration"] // iters_per_epoch,
            "optimizer": optimizer.state_dict(), "scheduler": {"name": cfg.lr_schedule, "total": total},
            "scaler": None, "rng": {"torch": torch.get_rng_state()},
            "best_miou": state["best_miou"], "best_iteration": state["best_iteration"],
            "bad_evals": state["bad_evals"], "elapsed": state["elapsed"] + (time.time() - t_start),
        }
        if ema:
            train_state["raw_state_dict"] = net.state_dict()  # what training continues from
        if torch.cuda.is_available():
            train_state["rng"]["cuda"] = torch.cuda.get_rng_state_all()
        ckpt = make_checkpoint(cfg.model, num_classes, cfg.model_options, scored.state_dict(), train_ds.classes,
                               train_ds.palette, dataset=cfg.dataset,
                               label_set=getattr(train_ds, "label_set", "") or "", config=as_dict(cfg),
                               metrics=metrics, train_state=train_state,
                               photo_size=photo_size)
        save_checkpoint(ckpt, out / name)

    stop = StopFlag()
    t_start = time.time()
    last_save = time.time()
    it = state["iteration"]
    from tqdm import tqdm

    # A bar on a terminal; in a log file (nohup, CI) a plain line per log row instead.
    tty = sys.stderr.isatty()
    bar = tqdm(total=total, initial=it, disable=not (main and tty), dynamic_ncols=True, unit="it")
    window_loss, window_n, window_t = 0.0, 0, time.time()
    requested = False
    crop, loader = None, None
    try:
        while it < total:
            epoch, start = divmod(it, iters_per_epoch)
            sampler.set_epoch(epoch, start * cfg.batch_size * cfg.accumulate)
            model.train()
            if crop_at(cfg, it, total) != crop:
                crop = crop_at(cfg, it, total)
                loader = make_loader(crop)
                if main and cfg.crop_schedule:
                    tqdm.write(f"training crops {crop[0]}x{crop[1]} from iteration {it}")
            batches = iter(loader)
            for _ in range(start, iters_per_epoch):
                lr = learning_rate(cfg, it, total)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                optimizer.zero_grad(set_to_none=True)
                step_loss = torch.zeros((), device=device)
                for _micro in range(cfg.accumulate):
                    images, masks = next(batches)
                    images, masks = images.to(device, non_blocking=True), masks.to(device, non_blocking=True)
                    try:
                        loss = loss_fn(images, masks) / cfg.accumulate
                    except ValueError as e:
                        if "more than 1 value per channel" not in str(e):
                            raise
                        raise SceneparseError(f"batch_size {cfg.batch_size} is too small for {cfg.model}: its "
                                              f"BatchNorm after global pooling needs >= 2 images per "
                                              f"process") from None
                    loss.backward()
                    step_loss += loss.detach().float()
                step_loss = dist.all_reduce_sum(step_loss) / world
                if not torch.isfinite(step_loss):
                    raise SceneparseError(
                        f"loss became {step_loss.item()} at iteration {it} (epoch {epoch}); stopped without "
                        f"saving. Last good checkpoint: {out / 'last.pt'}. Lower the lr or check the data.")
                optimizer.step()
                if ema:
                    ema.update(it)
                it += 1
                state["iteration"] = it
                bar.update(1)
                window_loss += step_loss.item()
                window_n += 1
                if it % cfg.log_interval == 0 or it == total:
                    now = time.time()
                    ips = window_n * cfg.batch_size * cfg.accumulate * world / max(now - window_t, 1e-9)
                    log.write({"iteration": it, "epoch": epoch, "loss": window_loss / window_n, "lr": lr,
                               "images_per_s": ips, "elapsed_s": state["elapsed"] + now - t_start,
                               "peak_rss_mb": peak_rss_mb()})
                    bar.set_postfix(loss=f"{window_loss / window_n:.4f}", lr=f"{lr:.2e}", img_s=f"{ips:.2f}")
                    if main and not tty:
                        eta = (total - it) * (now - window_t) / window_n
                        print(f"iter {it}/{total} epoch {epoch + 1} loss {window_loss / window_n:.4f} lr {lr:.2e} "
                              f"{ips:.2f} img/s eta {eta / 60:.0f} min", file=sys.stderr, flush=True)
                    window_loss, window_n, window_t = 0.0, 0, now
                epoch_end = it % iters_per_epoch == 0 or it == total  # a last partial epoch ends too
                if epoch_end and val_ds is not None and ((it // iters_per_epoch) % cfg.eval_interval == 0
                                                         or it == total):
                    eval_start = time.time()
                    report = evaluate_model(scored, val_ds, device=device, mode=cfg.eval_mode,
                                            crop=tuple(cfg.eval_crop) or None,
                                            class_names=train_ds.classes)
                    model.train()
                    state["metrics"] = report
                    improved = report["miou"] > state["best_miou"]
                    if improved:
                        state.update(best_miou=report["miou"], best_iteration=it, bad_evals=0)
                    else:
                        state["bad_evals"] += 1
                    log.write({"iteration": it, "epoch": epoch, "val_miou": report["miou"],
                               "val_pixel_acc": report["pixel_acc"],
                               "val_mean_class_acc": report["mean_class_acc"],
                               "elapsed_s": state["elapsed"] + time.time() - t_start})
                    if main:
                        tqdm.write(f"[iter {it} epoch {epoch + 1}] val mIoU {report['miou']:.4f}  pixel acc "
                                  f"{report['pixel_acc']:.4f}  mean class acc {report['mean_class_acc']:.4f}"
                                  f"  (best {state['best_miou']:.4f} at iter {state['best_iteration']})")
                    log.plot()
                    if improved:
                        checkpoint("best.pt", report)
                    window_t += time.time() - eval_start  # keep evaluation time out of the training speed
                if epoch_end or time.time() - last_save > 60 * cfg.checkpoint_minutes:
                    checkpoint("last.pt", state["metrics"])
                    last_save = time.time()
                if cfg.early_stop and state["bad_evals"] >= cfg.early_stop:
                    tqdm.write(f"early stop: no better val mIoU in {cfg.early_stop} evaluations")
                    total = it
                out_of_time = time_limit is not None and time.time() - t_start > 60 * time_limit
                requested = dist.broadcast_object(stop.signal is not None or out_of_time
                                                  or (stop_after is not None and it >= stop_after))
                if it >= total or requested or crop_at(cfg, it, total) != crop:
                    break
            if requested:
                break
    except KeyboardInterrupt:
        requested = True
    finally:
        bar.close()
        stop.restore()
    interrupted = it < total
    if interrupted:
        checkpoint("last.pt", state["metrics"])
        if main:
            print(f"stopped at iteration {it}/{total}; continue with --resume {out / 'last.pt'}", file=sys.stderr)
    log.plot()  # also for runs without validation, which otherwise never draw it
    log.close()
    elapsed = state["elapsed"] + time.time() - t_start
    if main and not interrupted:
        print(f"done: {it} iterations in {elapsed / 60:.1f} min; best val mIoU {state['best_miou']:.4f} "
              f"at iteration {state['best_iteration']}; peak memory {peak_rss_mb():.0f} MiB; checkpoints in {out}",
              file=sys.stderr)
    return {"iteration": it, "total": total, "interrupted": interrupted, "best_miou": state["best_miou"],
            "metrics": state["metrics"], "elapsed": elapsed}


def _resume_path(resume: str | None, out: Path) -> Path | None:
    if resume is None:
        return None
    if resume == "auto":
        path = out / "last.pt"
        return path if path.is_file() else None
    return Path(resume)


def _restore(path: Path, model: nn.Module, optimizer, cfg: TrainConfig, state: dict) -> tuple[dict, dict | None]:
    """Load weights, optimiser and RNG state; returns the loop state and the averaged weights
    (None when the checkpoint has none: the average then starts from the weights)."""
    ckpt = load_checkpoint(path)
    ts = ckpt.get("train_state")
    if ts is None:
        raise SceneparseError(f"{path}: has no training state (a shipped or exported model?); cannot resume")
    if ckpt["model"]["name"] != cfg.model:
        raise SceneparseError(f"{path}: was trained as {ckpt['model']['name']}, the config says {cfg.model}")
    differs = sorted(k for k, v in as_dict(cfg).items() if ckpt.get("config", {}).get(k, v) != v)
    if differs and dist.is_main():
        print(f"resuming with changed config keys: {', '.join(differs)}", file=sys.stderr)
    try:
        model.load_state_dict(ts.get("raw_state_dict", ckpt["state_dict"]))
        optimizer.load_state_dict(ts["optimizer"])
    except (RuntimeError, ValueError, KeyError) as e:
        raise SceneparseError(f"{path}: does not fit this model/optimiser ({str(e).splitlines()[0]})") from None
    torch.set_rng_state(ts["rng"]["torch"])
    if "cuda" in ts["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(ts["rng"]["cuda"])
    if dist.is_main():
        print(f"resumed from {path} at iteration {ts['iteration']}", file=sys.stderr)
    state = {"iteration": ts["iteration"], "best_miou": ts["best_miou"], "best_iteration": ts["best_iteration"],
             "bad_evals": ts["bad_evals"], "elapsed": ts["elapsed"], "metrics": ckpt.get("metrics", {})}
    return state, ckpt["state_dict"] if "raw_state_dict" in ts else None
