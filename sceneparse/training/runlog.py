"""What a run records while it trains: log.csv, TensorBoard events, curves.png and the progress bar."""
from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

from tqdm import tqdm

from sceneparse.utils import atomic_path, peak_rss_mb
from sceneparse.viz import plot_curves

LOG_FIELDS = ["iteration", "epoch", "loss", "lr", "images_per_s", "elapsed_s", "peak_rss_mb",
              "val_miou", "val_pixel_acc", "val_mean_class_acc"]


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
            plot_curves(self.rows, self.out / "curves.png")

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


class Progress:
    """The progress bar, or on a log file (nohup, CI) a plain line per log row, and the training
    rows of log.csv: the loss averaged over the last `log_interval` iterations, and images/s."""

    def __init__(self, log: RunLog, total: int, initial: int, enabled: bool, images_per_step: int,
                 log_interval: int, elapsed_before: float):
        self.log, self.enabled, self.images_per_step = log, enabled, images_per_step
        self.log_interval, self.elapsed_before = log_interval, elapsed_before
        self.tty = sys.stderr.isatty()
        self.bar = tqdm(total=total, initial=initial, disable=not (enabled and self.tty), dynamic_ncols=True,
                        unit="it")
        self.start = self.window_start = time.time()
        self.loss, self.steps = 0.0, 0

    def elapsed(self) -> float:
        """Training seconds over all sessions of this run."""
        return self.elapsed_before + time.time() - self.start

    def step(self, iteration: int, epoch: int, total: int, loss: float, lr: float) -> None:
        self.bar.update(1)
        self.loss += loss
        self.steps += 1
        if iteration % self.log_interval and iteration != total:
            return
        now = time.time()
        ips = self.steps * self.images_per_step / max(now - self.window_start, 1e-9)
        mean = self.loss / self.steps
        self.log.write({"iteration": iteration, "epoch": epoch, "loss": mean, "lr": lr, "images_per_s": ips,
                        "elapsed_s": self.elapsed(), "peak_rss_mb": peak_rss_mb()})
        self.bar.set_postfix(loss=f"{mean:.4f}", lr=f"{lr:.2e}", img_s=f"{ips:.2f}")
        if self.enabled and not self.tty:
            eta = (total - iteration) * (now - self.window_start) / self.steps
            print(f"iter {iteration}/{total} epoch {epoch + 1} loss {mean:.4f} lr {lr:.2e} {ips:.2f} img/s "
                  f"eta {eta / 60:.0f} min", file=sys.stderr, flush=True)
        self.loss, self.steps, self.window_start = 0.0, 0, now

    def pause(self, seconds: float) -> None:
        """Keep `seconds` (an evaluation) out of the training speed."""
        self.window_start += seconds

    def write(self, message: str) -> None:
        if self.enabled:
            tqdm.write(message)

    def close(self) -> None:
        self.bar.close()
