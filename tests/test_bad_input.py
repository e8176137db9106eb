"""Bad input and faults: a one-line error (exit 2) or a skip with a warning (exit 1), never a
traceback, a hang, silent wrong output or lost data.

`CASES` is the table: command line -> exit code and a fragment of the message (or a check of the
output). The tests after it are the ones a table row cannot express (a worker process, a kill -9,
a diverging run). Everything runs on tiny networks, 36x44 images and one or two iterations.
"""
from __future__ import annotations

import json
import os
import pickle
import signal
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from conftest import CLASSES, PALETTE, SAMPLES, lively
from sceneparse import evaluate as evaluate_mod
from sceneparse.checkpoint import load_checkpoint, make_checkpoint, model_from_checkpoint, save_checkpoint
from sceneparse.cli import main
from sceneparse.models import build_model
from sceneparse.training import load_config
from sceneparse.training import loop as train_mod
from sceneparse.training.losses import HardPixelLoss, SafeCrossEntropy
from sceneparse.utils import (SceneparseError, atomic_path, read_image, remove_stale_temp_files,
                              writable_folder)

pytestmark = pytest.mark.usefixtures("one_thread")

H, W = 36, 44
OPTIONS = {"width1": 8, "width2": 16}


# ------------------------------------------------------------------ the files the table uses
def png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height but holds no pixels: enough to test size limits, which
    must refuse the file before decoding it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def folder_dataset(root: Path, masks=None, n: int = 2) -> Path:
    """A `folder` dataset of the five test classes: n pairs in train and val."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        (root / split / "images").mkdir(parents=True)
        (root / split / "masks").mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(root / split / "images" / f"{i}.png")
            mask = rng.integers(0, 5, (H, W), dtype=np.uint8) if masks is None else masks(i)
            Image.fromarray(mask).save(root / split / "masks" / f"{i}.png")
    (root / "classes.yaml").write_text(yaml.safe_dump({"names": CLASSES, "colors": PALETTE}))
    return root


def good_checkpoint(data: Path, **changes) -> dict:
    torch.manual_seed(0)
    model = lively(build_model("dabnet", 5, **OPTIONS))
    ckpt = make_checkpoint("dabnet", 5, OPTIONS, model.state_dict(), CLASSES, PALETTE, dataset="folder",
                           config={"root": str(data)})
    ckpt.update(changes)
    return ckpt


class Evil:
    def __reduce__(self):
        return (os.system, ("echo owned > /dev/null",))


@pytest.fixture(scope="module")
def w(tmp_path_factory) -> dict[str, Path]:
    """Every input file of the table, made once: w["name"] is its path."""
    root = tmp_path_factory.mktemp("bad")
    w: dict[str, Path] = {"tmp": root}
    w["data"] = folder_dataset(root / "data")
    w["void_data"] = folder_dataset(root / "void_data", masks=lambda i: np.full((H, W), 255, np.uint8))
    corrupt = folder_dataset(root / "corrupt_data")
    (corrupt / "val" / "images" / "1.png").write_bytes(b"not an image")
    w["corrupt_data"] = corrupt
    wrong_size = folder_dataset(root / "wrong_size_data")
    Image.fromarray(np.zeros((H, W + 2), np.uint8)).save(wrong_size / "val" / "masks" / "1.png")
    w["wrong_size_data"] = wrong_size
    bad_value = folder_dataset(root / "bad_value_data")
    Image.fromarray(np.full((H, W), 7, np.uint8)).save(bad_value / "val" / "masks" / "0.png")
    w["bad_value_data"] = bad_value

    ckpts = root / "ckpts"
    ckpts.mkdir()
    good = good_checkpoint(w["data"])
    save_checkpoint(good, ckpts / "good.pt")
    w["good.pt"] = ckpts / "good.pt"

    def variant(name: str, ckpt: dict) -> None:
        save_checkpoint(ckpt, ckpts / name)
        w[name] = ckpts / name

    nan = {k: v.clone() for k, v in good["state_dict"].items()}
    nan["classifier.weight" if "classifier.weight" in nan else next(iter(nan))].fill_(float("nan"))
    variant("nan.pt", {**good, "state_dict": nan})
    inf = {k: v.clone() for k, v in good["state_dict"].items()}
    next(v for v in inf.values() if v.is_floating_point()).fill_(float("inf"))
    variant("inf.pt", {**good, "state_dict": inf})
    variant("four_classes.pt", {**good, "model": {**good["model"], "num_classes": 4}, "classes": CLASSES[:4],
                                "palette": PALETTE[:4]})
    variant("no_classes.pt", {k: v for k, v in good.items() if k != "classes"})
    variant("short_palette.pt", {**good, "palette": PALETTE[:3]})
    variant("count_mismatch.pt", {**good, "model": {**good["model"], "num_classes": 6}})
    variant("newer.pt", {**good, "version": 99})
    variant("unknown_model.pt", {**good, "model": {**good["model"], "name": "no_such_net"}})
    variant("no_weights.pt", {**good, "state_dict": {}})
    (ckpts / "empty.pt").write_bytes(b"")
    (ckpts / "text.pt").write_text("hello\n")
    torch.save({"weights": torch.zeros(2)}, ckpts / "foreign.pt")
    with (ckpts / "hostile.pt").open("wb") as f:
        pickle.dump({"format": "sceneparse-checkpoint", "payload": Evil()}, f)
    torch.save({"format": "sceneparse-checkpoint", "payload": Evil()}, ckpts / "hostile_zip.pt")
    for name in ("empty.pt", "text.pt", "foreign.pt", "hostile.pt", "hostile_zip.pt"):
        w[name] = ckpts / name

    photos = root / "photos"
    photos.mkdir()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(photos / "good.png")
    (photos / "corrupt.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (photos / "bomb.png").write_bytes(png_header(20000, 20000))     # 400 MP: PIL refuses at open
    (photos / "big.png").write_bytes(png_header(10000, 10000))      # 100 MP: between 1x and 2x PIL's limit
    grey8 = rng.integers(0, 256, (H, W), dtype=np.uint8)
    Image.fromarray(grey8).save(photos / "grey8.png")
    Image.fromarray(grey8.astype(np.uint16) * 257).save(photos / "grey16.png")
    stored = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    Image.fromarray(stored).save(photos / "rotated.png", exif=exif)
    w["photos"] = photos
    for name in ("good.png", "corrupt.jpg", "bomb.png", "big.png", "grey8.png", "grey16.png", "rotated.png"):
        w[name] = photos / name
    w["stored"] = stored  # type: ignore[assignment]
    (root / "a_file").write_text("in the way")
    w["a_file"] = root / "a_file"
    return w


def train_config(w, tmp: Path, name: str = "cfg.yaml", **changes) -> Path:
    cfg = {"model": "pspnet_lite", "model_options": {"width": 8}, "dataset": "folder", "root": str(w["data"]),
           "val_split": "", "crop_size": [32, 32], "scale": [1.0, 1.0], "batch_size": 2, "workers": 0,
           "cache": False, "optimizer": "adamw", "lr": 0.001, "iterations": 1, "log_interval": 1, "seed": 0}
    cfg.update(changes)
    path = tmp / name
    path.write_text(yaml.safe_dump(cfg))
    return path


# ------------------------------------------------------------------ the table
@dataclass
class Case:
    id: str
    argv: Callable[[dict, Path], list[str]]   # (files, a fresh folder) -> command line
    code: int
    fragment: str = ""                        # in the error (code 2) or in stderr (code 1)
    check: Callable[[dict, Path], None] | None = None   # for correct output: a look at what was written


def ev(ckpt: str, *extra: str, data: str = "data"):
    return lambda w, t: ["evaluate", "--checkpoint", str(w[ckpt]), "--dataset", "folder", "--root", str(w[data]),
                         "--split", "val", "--out", str(t / "eval"), *extra]


def pr(*names: str, extra: tuple = ()):
    return lambda w, t: ["predict", *(str(w[n]) for n in names), "--checkpoint", str(w["good.pt"]),
                         "--out", str(t / "pred"), *extra]


def tr(*sets: str, extra: tuple = (), **cfg):
    return lambda w, t: ["train", str(train_config(w, t, **cfg)), "--out", str(t / "run"),
                         *sum((["--set", s] for s in sets), []), *extra]


def written(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def metrics_written(w, t):
    m = json.loads((t / "eval" / "metrics.json").read_text())
    assert 0 <= m["miou"] <= 1 and m["setup"]["images"] == 2


def index_png(name: str, shape: tuple[int, int]):
    def check(w, t):
        assert np.asarray(Image.open(t / "pred" / f"{name}_index.png")).shape == shape
    return check


def same_prediction_as_8bit(w, t):
    a = np.asarray(Image.open(t / "pred" / "grey16_index.png"))
    b = np.asarray(Image.open(t / "pred" / "grey8_index.png"))
    assert np.array_equal(a, b)


def good_png_predicted(w, t):
    assert (t / "pred" / "good_index.png").is_file()


def trained(w, t):
    assert load_checkpoint(t / "run" / "last.pt")["train_state"]["iteration"] >= 1


NO_CUDA = not torch.cuda.is_available()

CASES = [
    # --- checkpoints, through evaluate, predict, export and benchmark
    Case("ckpt-missing", lambda w, t: ["evaluate", "--checkpoint", str(t / "nope.pt"), "--dataset", "folder",
                                       "--root", str(w["data"]), "--out", str(t / "eval")], 2, "checkpoint not found"),
    Case("ckpt-empty", ev("empty.pt"), 2, "not a readable checkpoint"),
    Case("ckpt-text", ev("text.pt"), 2, "not a readable checkpoint"),
    Case("ckpt-foreign-torch-file", ev("foreign.pt"), 2, "not a sceneparse checkpoint"),
    Case("ckpt-hostile-pickle", ev("hostile.pt"), 2, "refused"),
    Case("ckpt-hostile-zip", ev("hostile_zip.pt"), 2, "refused: the file asks to create Python objects"),
    Case("ckpt-nan-weights", ev("nan.pt"), 2, "hold NaN or infinity"),
    Case("ckpt-inf-weights", ev("inf.pt"), 2, "hold NaN or infinity"),
    Case("ckpt-classes-vs-classifier", ev("four_classes.pt"), 2, "weights contradict the metadata"),
    Case("ckpt-no-classes", ev("no_classes.pt"), 2, "no list of class names"),
    Case("ckpt-short-palette", ev("short_palette.pt"), 2, "palette must hold 5"),
    Case("ckpt-count-mismatch", ev("count_mismatch.pt"), 2, "names 5 classes but its model has 6"),
    Case("ckpt-newer-version", ev("newer.pt"), 2, "upgrade sceneparse"),
    Case("ckpt-unknown-model", ev("unknown_model.pt"), 2, "no_such_net"),
    Case("ckpt-no-weights", ev("no_weights.pt"), 2, "no weights"),
    Case("predict-nan-ckpt", lambda w, t: ["predict", str(w["good.png"]), "--checkpoint", str(w["nan.pt"]),
                                           "--out", str(t / "pred")], 2, "NaN or infinity"),
    Case("predict-hostile-ckpt", lambda w, t: ["predict", str(w["good.png"]), "--checkpoint", str(w["hostile.pt"]),
                                               "--out", str(t / "pred")], 2, "refused"),
    Case("export-short-palette", lambda w, t: ["export", "--checkpoint", str(w["short_palette.pt"]), "--format",
                                               "checkpoint", "--out", str(t / "x.pt")], 2, "palette"),
    Case("benchmark-nan-ckpt", lambda w, t: ["benchmark", "--checkpoint", str(w["nan.pt"]), "--size", "32x32",
                                             "--runs", "1", "--warmup", "0"], 2, "NaN or infinity"),
    # --- evaluate
    Case("evaluate-good", ev("good.pt"), 0, check=metrics_written),
    Case("evaluate-limit-0", ev("good.pt", "--limit", "0"), 2, "--limit 0: must be at least 1"),
    Case("evaluate-limit-negative", ev("good.pt", "--limit", "-1"), 2, "--limit -1: must be at least 1"),
    Case("evaluate-threads-negative", ev("good.pt", "--threads", "-1"), 2, "--threads -1: must be at least 1"),
    Case("evaluate-threads-0", ev("good.pt", "--threads", "0"), 2, "--threads 0"),
    Case("evaluate-out-under-a-file", lambda w, t: ev("good.pt")(w, t)[:-1] + [str(w["a_file"] / "eval")], 2,
         "output folder is not writable"),
    Case("evaluate-out-is-a-file", lambda w, t: ev("good.pt")(w, t)[:-1] + [str(w["a_file"])], 2,
         "exists and is not a folder"),
    Case("evaluate-root-missing", lambda w, t: ["evaluate", "--checkpoint", str(w["good.pt"]), "--dataset", "folder",
                                                "--root", str(t / "nowhere"), "--out", str(t / "e")], 2,
         "root not found"),
    Case("evaluate-no-such-split", ev("good.pt", "--split", "nope"), 2, "no split 'nope'"),
    Case("evaluate-classes-differ", lambda w, t: ["evaluate", "--checkpoint", str(w["good.pt"]), "--dataset",
                                                  "camvid", "--root", str(SAMPLES / "camvid"), "--split", "train",
                                                  "--out", str(t / "e")], 2, "the checkpoint predicts"),
    Case("evaluate-corrupt-image", ev("good.pt", data="corrupt_data"), 2, "1.png: unreadable or corrupt image"),
    Case("evaluate-mask-wrong-size", ev("good.pt", data="wrong_size_data"), 2, "mask is 46x36 but image"),
    Case("evaluate-mask-bad-value", ev("good.pt", data="bad_value_data"), 2,
         "label value 7 is neither a class id nor the ignore value"),
    # --- predict (an unreadable image is skipped with a warning: exit 1)
    Case("predict-corrupt-image", pr("corrupt.jpg"), 1, "corrupt.jpg: unreadable or corrupt image"),
    Case("predict-bomb-above-2x-limit", pr("bomb.png"), 1, "bomb.png: image has 400 megapixels, above the 89"),
    Case("predict-bomb-above-limit", pr("big.png"), 1, "big.png: image is 10000x10000 (100 megapixels)"),
    Case("predict-bomb-beside-good-photo-in-a-batch", pr("big.png", "good.png", extra=("--batch-size", "2")), 1,
         "big.png: image is 10000x10000", check=good_png_predicted),
    Case("predict-16bit-grey-as-8bit", pr("grey16.png", "grey8.png"), 0, check=same_prediction_as_8bit),
    Case("predict-exif-rotated", pr("rotated.png"), 0, check=index_png("rotated", (W, H))),
    Case("predict-alpha-out-of-range", pr("good.png", extra=("--alpha", "2")), 2, "--alpha 2.0"),
    *[Case(f"predict-scales-{v}", pr("good.png", extra=("--scales", v)), 2, f"--scales {v}: each scale must be")
      for v in ("nan", "inf", "0", "1,1000")],
    # --- train: config ranges, one validation place
    *[Case(f"train-{s.split('=')[0]}-{s.split('=')[1]}", tr(s), 2, f"'{s.split('=')[0]}' must")
      for s in ("scale=[0,0]", "scale=[2.0,1.0]", "early_stop=-1", "eval_interval=0", "log_interval=0",
                "workers=-1", "seed=-1", "lr=-0.1", "lr=0", "crop_size=[0,64]", "eval_size=[0,10]",
                "epochs=-1", "iterations=-1", "checkpoint_minutes=0", "label_smoothing=1.0",
                "warmup_iters=-1")],
    *([Case("train-device-cuda-without-cuda", tr("device=cuda"), 2, "sees no CUDA GPU")] if NO_CUDA else []),
    Case("train-device-unknown", tr("device=tpu"), 2, "'device' must be auto, cpu or cuda"),
    Case("train-batch-size-0", tr("batch_size=0"), 2, "'batch_size' and 'accumulate' must be >= 1"),
    Case("train-unknown-key", tr("learning_rate=1"), 2, "unknown key 'learning_rate'"),
    Case("train-wrong-type", tr("batch_size=eight"), 2, "'batch_size' must be int"),
    Case("train-missing-config", lambda w, t: ["train", str(t / "none.yaml")], 2, "config file not found"),
    Case("train-invalid-yaml", lambda w, t: ["train", str(written(t / "bad.yaml", "model: [")), "--out",
                                             str(t / "r")], 2, "invalid YAML"),
    Case("train-not-a-mapping", lambda w, t: ["train", str(written(t / "list.yaml", "- 1\n- 2\n")), "--out",
                                              str(t / "r")], 2, "expected a mapping"),
    Case("train-root-missing", tr(root="/nonexistent/sceneparse"), 2, "dataset root not found"),
    Case("train-stop-after-negative", tr(extra=("--stop-after", "-1")), 2, "--stop-after -1"),
    Case("train-time-limit-0", tr(extra=("--time-limit", "0")), 2, "--time-limit 0"),
    Case("train-mask-all-void", lambda w, t: ["train", str(train_config(w, t, root=str(w["void_data"]),
                                                                        iterations=2)), "--out", str(t / "run")],
         0, check=trained),
    Case("train-stop-after-exits-0", tr(extra=("--stop-after", "1"), iterations=3), 0,
         "stopped at iteration 1/3 (--stop-after); continue with --resume"),
    # --- data commands
    Case("data-show-out-under-a-file", lambda w, t: ["data", "show", "--dataset", "folder", "--root", str(w["data"]),
                                                     "--out", str(w["a_file"] / "grid.png")], 2,
         "cannot write here"),
    Case("data-show-out-is-a-folder", lambda w, t: ["data", "show", "--dataset", "folder", "--root", str(w["data"]),
                                                    "--out", str(t)], 2, "is a folder"),
    Case("data-show-num-0", lambda w, t: ["data", "show", "--dataset", "folder", "--root", str(w["data"]),
                                          "--out", str(t / "g.png"), "--num", "0"], 2, "--num must be at least 1"),
    Case("data-stats-out-under-a-file", lambda w, t: ["data", "stats", "--dataset", "folder", "--root",
                                                      str(w["data"]), "--out", str(w["a_file"] / "s.json")], 2,
         "cannot write here"),
    Case("data-stats-good", lambda w, t: ["data", "stats", "--dataset", "folder", "--root", str(w["data"]),
                                          "--out", str(t / "s.json")], 0,
         check=lambda w, t: json.loads((t / "s.json").read_text())),
    Case("data-verify-corrupt", lambda w, t: ["data", "verify", "--dataset", "folder", "--root",
                                              str(w["corrupt_data"])], 1, ""),
    *[Case(f"data-verify-color-threshold-{v}", lambda w, t, v=v: ["data", "verify", "--dataset", "cityscapes_pairs",
                                                                  "--root", str(w["data"]), "--color-threshold", v],
           2, f"--color-threshold {v}: must be at least 0") for v in ("nan", "-1")],
    Case("data-root-missing", lambda w, t: ["data", "stats", "--dataset", "folder", "--root", str(t / "no")], 2,
         "not found"),
    # --- export and benchmark
    Case("export-out-under-a-file", lambda w, t: ["export", "--checkpoint", str(w["good.pt"]), "--format",
                                                  "checkpoint", "--out", str(w["a_file"] / "m.pt")], 2,
         "cannot write here"),
    Case("export-out-is-a-folder", lambda w, t: ["export", "--checkpoint", str(w["good.pt"]), "--format",
                                                 "checkpoint", "--out", str(t)], 2, "is a folder"),
    Case("export-checkpoint-good", lambda w, t: ["export", "--checkpoint", str(w["good.pt"]), "--format",
                                                 "checkpoint", "--out", str(t / "slim.pt")], 0,
         check=lambda w, t: load_checkpoint(t / "slim.pt")),
    Case("export-size-too-small", lambda w, t: ["export", "--checkpoint", str(w["good.pt"]), "--size", "8x8",
                                                "--out", str(t / "m.onnx")], 2, "at least 32x32"),
    Case("benchmark-threads-negative", lambda w, t: ["benchmark", "--model", "pspnet_lite", "--threads", "-1"], 2,
         "--threads -1: must be at least 1"),
    Case("benchmark-size-too-small", lambda w, t: ["benchmark", "--model", "pspnet_lite", "--size", "8x8"], 2,
         "at least 32"),
    Case("benchmark-runs-0", lambda w, t: ["benchmark", "--model", "dabnet", "--size", "32x32", "--runs", "0"], 2,
         "--runs and --batch-size must be at least 1"),
]

# predict's own checks, made in cli/predict.py and Segmenter
CASES += [
    Case("predict-threads-negative", pr("good.png", extra=("--threads", "-1")), 2, "--threads -1: must be at least 1"),
    Case("predict-a-device", lambda w, t: ["predict", "/dev/null", "--checkpoint", str(w["good.pt"]), "--out",
                                           str(t / "pred")], 2, "/dev/null: not a regular file or folder"),
    Case("predict-missing", pr(extra=(str(Path("nowhere") / "x.png"),)), 2,
         "x.png: no such file, folder or matching glob"),
    Case("predict-out-is-the-input-folder", lambda w, t: ["predict", str(w["photos"]), "--checkpoint",
                                                          str(w["good.pt"]), "--out", str(w["photos"])], 2,
         "inside the output folder"),
]


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def check_case(case: Case, w, tmp_path, capsys) -> None:
    code, err = run_cli(case.argv(w, tmp_path), capsys)
    assert "Traceback" not in err, err[-2000:]
    assert code == case.code, err[-2000:]
    if code == 2:
        errors = [line for line in err.splitlines() if line.startswith("sceneparse: error:")]
        assert len(errors) == 1, err[-2000:]
        assert case.fragment in errors[0], errors[0]
        assert "weights_only=False" not in err
    elif case.fragment:
        assert case.fragment in err, err[-2000:]
    if case.check is not None:
        case.check(w, tmp_path)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_table(case, w, tmp_path, capsys):
    check_case(case, w, tmp_path, capsys)


def test_table_size():
    assert len(CASES) >= 70


# ------------------------------------------------------------------ 1. hangs and silent wrong output
def test_worker_error_is_one_line_and_train_exits(w, tmp_path, capsys):
    """workers >= 1 and an unreadable training image: the worker's error comes back as the one-line
    error naming the file, and no worker outlives the run (a worker left alive, ignoring SIGTERM,
    kept the interpreter from exiting: `train` never exited)."""
    import multiprocessing

    data = folder_dataset(tmp_path / "data", n=3)
    bad = data / "train" / "images" / "1.png"
    bad.write_bytes(b"garbage")
    cfg = train_config(w, tmp_path, root=str(data), workers=1, batch_size=1, iterations=6)
    assert main(["train", str(cfg), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("sceneparse: error:")]
    assert errors == [f"sceneparse: error: {bad}: unreadable or corrupt image (cannot identify image file "
                      f"'{bad}')"], err
    assert "Traceback" not in err
    deadline = time.time() + 10
    while multiprocessing.active_children() and time.time() < deadline:
        time.sleep(0.1)
    assert not multiprocessing.active_children()


def test_exif_orientation_is_applied(w):
    image = read_image(w["rotated.png"])
    assert image.shape == (W, H, 3)
    assert np.array_equal(image, np.rot90(w["stored"], k=-1))  # 6: rotate 90 degrees clockwise


def test_16bit_grey_scales_by_its_range(w, tmp_path):
    assert np.array_equal(read_image(w["grey16.png"]), read_image(w["grey8.png"]))
    twelve = (np.arange(H * W).reshape(H, W) * 4095 // (H * W - 1)).astype(np.uint16)  # 12-bit data, 16-bit file
    Image.fromarray(twelve).save(tmp_path / "g12.png")
    image = read_image(tmp_path / "g12.png")
    assert image.max() == 255 and image[0, 0, 0] == 0 and np.all(image[..., 0] == image[..., 2])
    assert np.allclose(image[..., 0], twelve / 4095 * 255, atol=0.51)


def test_nan_and_inf_weights_are_refused_at_load(w):
    for name in ("nan.pt", "inf.pt"):
        with pytest.raises(SceneparseError, match=f"{name}: refused: 1 weight tensor"):
            load_checkpoint(w[name])


def test_diverged_weights_are_never_saved_nor_named(w, tmp_path, monkeypatch):
    """Weights blown up to 1e30 by a step (finite, but the outputs are not): the old guard saved
    them as last.pt and later named that file the last good checkpoint."""
    real = train_mod._step

    def diverging_step(run, batches, lr, it, epoch):
        loss = real(run, batches, lr, it, epoch)
        if it == 1:
            with torch.no_grad():
                for p in run.net.parameters():
                    p.mul_(1e30)
        return loss

    monkeypatch.setattr(train_mod, "_step", diverging_step)
    cfg = load_config(train_config(w, tmp_path, iterations=3))  # 1 iteration per epoch: last.pt each time
    with pytest.raises(SceneparseError, match=r"training diverged by iteration 2: its outputs are not finite; "
                                              r"last.pt was not written. Last good checkpoint: .*last.pt "
                                              r"\(iteration 1\)"):
        train_mod.train(cfg, tmp_path / "run")
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    assert last["train_state"]["iteration"] == 1
    with torch.no_grad():
        assert torch.isfinite(model_from_checkpoint(last)(torch.zeros(1, 3, 32, 32))).all()


def test_nan_loss_names_no_checkpoint_when_none_was_written(w, tmp_path, monkeypatch):
    real = train_mod.make_loss_fn

    def poisoned(*args, **kwargs):
        loss_fn = real(*args, **kwargs)
        return lambda images, masks: loss_fn(images, masks) * float("nan")

    monkeypatch.setattr(train_mod, "make_loss_fn", poisoned)
    with pytest.raises(SceneparseError, match="loss became nan at iteration 0 .*No checkpoint was written before it"):
        train_mod.train(load_config(train_config(w, tmp_path)), tmp_path / "run")
    assert not (tmp_path / "run" / "last.pt").exists()


def test_a_batch_without_labelled_pixels_has_zero_loss():
    logits = torch.randn(2, 5, 4, 6, requires_grad=True)
    void = torch.full((2, 4, 6), 255)
    for criterion in (SafeCrossEntropy(), SafeCrossEntropy(weight=torch.ones(5)), HardPixelLoss(0.5)):
        loss = criterion(logits, void)
        loss.backward()
        assert loss.item() == 0 and torch.isfinite(logits.grad).all()
    zero_weight = SafeCrossEntropy(weight=torch.tensor([0.0, 1, 1, 1, 1]))
    assert zero_weight(logits, torch.zeros(2, 4, 6, dtype=torch.long)).item() == 0
    target = torch.randint(0, 5, (2, 4, 6))
    target[0] = 255
    expected = torch.nn.functional.cross_entropy(logits, target, ignore_index=255)
    assert torch.equal(SafeCrossEntropy()(logits, target), expected)  # otherwise exactly the usual loss


# ------------------------------------------------------------------ 2. data lost
def test_train_into_a_run_folder_needs_resume_or_overwrite(w, tmp_path, capsys):
    cfg = train_config(w, tmp_path)
    out = tmp_path / "run"
    assert main(["train", str(cfg), "--out", str(out)]) == 0
    before = (out / "last.pt").read_bytes()
    capsys.readouterr()
    assert main(["train", str(cfg), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"sceneparse: error: {out}: already holds a run (config.yaml, curves.png, last.pt, log.csv); "
                   f"continue it with --resume auto, or start over with --overwrite"), err
    assert (out / "last.pt").read_bytes() == before
    assert main(["train", str(cfg), "--out", str(out), "--overwrite"]) == 0
    assert main(["train", str(cfg), "--out", str(out), "--resume", "auto", "--set", "iterations=2"]) == 0
    assert load_checkpoint(out / "last.pt")["train_state"]["iteration"] == 2


def _write_and_die(path: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(b"x" * 100000)
        os.kill(os.getpid(), signal.SIGKILL)


def test_a_kill_9_mid_write_leaves_no_temp_file_after_the_next_start(w, tmp_path):
    import multiprocessing

    out = tmp_path / "run"
    out.mkdir()
    writer = multiprocessing.get_context("fork").Process(target=_write_and_die, args=(str(out / "last.pt"),))
    writer.start()
    writer.join(60)
    assert writer.exitcode == -signal.SIGKILL
    stale = list(out.glob(".last.pt.*.tmp"))
    assert len(stale) == 1
    old = time.time() - 60
    os.utime(stale[0], (old, old))
    with atomic_path(out / "best.pt") as live:  # a live writer's temp file (locked) is left alone
        live.write_bytes(b"y")
        os.utime(live, (old, old))
        assert main(["train", str(train_config(w, tmp_path)), "--out", str(out)]) == 0
        assert live.exists()
    assert not stale[0].exists() and not list(out.glob(".*.tmp"))


def test_writable_folder_removes_only_stale_temp_files(tmp_path):
    (tmp_path / ".a.pt.x1.tmp").write_bytes(b"")
    (tmp_path / ".b.pt.x2.tmp").write_bytes(b"")
    old = time.time() - 60
    os.utime(tmp_path / ".a.pt.x1.tmp", (old, old))  # .b is fresh: maybe a writer that has not locked it yet
    writable_folder(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".b.pt.x2.tmp"]
    assert remove_stale_temp_files(tmp_path / "missing") == []


# ------------------------------------------------------------------ 3. one line instead of a traceback
def test_disk_full_during_a_checkpoint_write_is_one_line(w, tmp_path, capsys, monkeypatch):
    from sceneparse import checkpoint as checkpoint_mod

    def full(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:858] . PytorchStreamWriter failed writing file "
                           "data/3: file write failed")

    monkeypatch.setattr(checkpoint_mod.torch, "save", full)
    out = tmp_path / "run"
    assert main(["train", str(train_config(w, tmp_path)), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (f"sceneparse: error: {out / 'last.pt'}: could not write the checkpoint (file write failed: disk "
                   f"full?); the previous file, if any, is intact"), err
    assert not list(out.glob(".*.tmp"))


def test_disk_full_as_oserror_is_one_line(w, tmp_path, monkeypatch):
    import errno

    from sceneparse import checkpoint as checkpoint_mod

    def full(obj, f, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(f))

    monkeypatch.setattr(checkpoint_mod.torch, "save", full)
    with pytest.raises(SceneparseError, match=r"last.pt: could not write the checkpoint \(disk full\)"):
        train_mod.train(load_config(train_config(w, tmp_path)), tmp_path / "run")


def test_evaluate_checks_out_before_evaluating(w, tmp_path, monkeypatch, capsys):
    def never(*args, **kwargs):
        raise AssertionError("the evaluation ran before --out was checked")

    monkeypatch.setattr(evaluate_mod, "evaluate_model", never)
    argv = ev("good.pt")(w, tmp_path)
    argv[-1] = str(w["a_file"] / "eval")
    assert main(argv) == 2
    assert "output folder is not writable" in capsys.readouterr().err


def test_hostile_file_is_refused_without_running_it_or_suggesting_the_unsafe_load(w, tmp_path, capsys):
    for name in ("hostile.pt", "hostile_zip.pt"):
        with pytest.raises(SceneparseError) as e:
            load_checkpoint(w[name])
        assert "weights_only" not in str(e.value) and "\n" not in str(e.value)
        assert str(e.value).startswith(f"{w[name]}: refused")


def test_image_size_limit_names_file_and_size(w):
    with pytest.raises(SceneparseError, match=r"big.png: image is 10000x10000 \(100 megapixels\), above the "
                                              r"89-megapixel limit"):
        read_image(w["big.png"])
    with pytest.raises(SceneparseError, match="bomb.png: image has 400 megapixels"):
        read_image(w["bomb.png"])
    assert read_image(w["good.png"], max_pixels=None).shape == (H, W, 3)


# ------------------------------------------------------------------ 4. rough edges
def test_time_limit_exits_0_with_the_resume_hint(w, tmp_path, capsys):
    code = main(["train", str(train_config(w, tmp_path, iterations=50)), "--out", str(tmp_path / "run"),
                 "--time-limit", "0.00001"])
    err = capsys.readouterr().err
    assert code == 0, err[-2000:]
    assert "(--time-limit); continue with --resume" in err


def test_train_returns_why_it_stopped(w, tmp_path):
    cfg = load_config(train_config(w, tmp_path, iterations=3))
    result = train_mod.train(cfg, tmp_path / "run", stop_after=1)
    assert result["interrupted"] and result["stopped_by"] == "stop_after"
    result = train_mod.train(cfg, tmp_path / "run", resume="auto")
    assert not result["interrupted"] and result["stopped_by"] is None


@pytest.mark.parametrize("name, options, fragment", [
    ("dabnet", {"width1": -1}, "width1 must be an integer >= 2, got -1"),
    ("dabnet", {"width2": 0}, "width2 must be an integer >= 2, got 0"),
    ("dabnet", {"dilations2": [0, 2]}, "dilations2 must be positive integers"),
    ("pspnet_lite", {"width": -3}, "width must be a positive integer"),
    ("lmffnet", {"width1": -2}, "width1 must be a positive multiple of 4"),
])
def test_negative_model_widths_are_one_line(name, options, fragment):
    """Model options from a config (`model_options:`) are checked for range too, not only type."""
    with pytest.raises(SceneparseError, match=fragment) as e:
        build_model(name, 5, **options)
    assert "\n" not in str(e.value)
