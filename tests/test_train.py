"""The training and evaluation engine on the bundled CamVid samples (tiny model, tiny crops)."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from sceneparse.cli import main
from sceneparse.training import losses, runlog, schedule
from sceneparse.training.ema import WeightAverage
from sceneparse.training import loop as train_mod
from sceneparse.checkpoint import load_checkpoint, model_from_checkpoint
from sceneparse.training.config import load_config
from sceneparse.utils import SceneparseError

from conftest import SAMPLES

TINY = "pspnet_lite"
TINY_OPTIONS = {"width": 8}


def write_config(tmp_path: Path, **overrides) -> Path:
    cfg = {
        "model": TINY, "model_options": TINY_OPTIONS, "dataset": "camvid", "root": str(SAMPLES / "camvid"),
        "train_split": "train", "val_split": "train", "crop_size": [64, 80], "scale": [0.75, 1.25],
        "batch_size": 2, "workers": 0, "optimizer": "adamw", "lr": 0.01, "weight_decay": 0.0,
        "iterations": 4, "eval_interval": 1, "log_interval": 1, "seed": 3, "eval_size": [90, 120],
    }
    cfg.update(overrides)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_tiny_run_writes_checkpoints_logs_and_evaluates(tmp_path):
    out = tmp_path / "run"
    cfg = load_config(write_config(tmp_path), ["iterations=6"])
    result = train_mod.train(cfg, out)
    assert not result["interrupted"] and result["iteration"] == 6
    for name in ("last.pt", "best.pt", "config.yaml", "log.csv", "curves.png"):
        assert (out / name).is_file(), name
    rows = [r for r in runlog.read_log(out / "log.csv", 10**9) if r["loss"] is not None]
    assert len(rows) == 6
    assert rows[-1]["loss"] < rows[0]["loss"]
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["model"]["name"] == TINY and ckpt["train_state"]["iteration"] == 6
    assert ckpt["classes"][0] == "sky" and len(ckpt["palette"]) == 11
    model = model_from_checkpoint(ckpt)
    assert model(torch.zeros(1, 3, 33, 47)).shape == (1, 11, 33, 47)
    best = load_checkpoint(out / "best.pt")
    assert best["metrics"]["miou"] == pytest.approx(result["best_miou"])

    ev = tmp_path / "eval"
    code = main(["evaluate", "--checkpoint", str(out / "best.pt"), "--split", "train", "--out", str(ev),
                 "--per-image"])
    assert code == 0
    metrics = json.loads((ev / "metrics.json").read_text())
    for key in ("miou", "pixel_acc", "mean_class_acc", "fwiou", "per_class", "confusion_matrix"):
        assert key in metrics
    assert 0 <= metrics["miou"] <= 1 and 0 <= metrics["pixel_acc"] <= 1
    assert len(json.loads((ev / "per_image.json").read_text())) == 3
    assert (ev / "confusion_matrix.png").stat().st_size > 1000


def two_frame_folder(root: Path) -> Path:
    """Two bundled CamVid frames, downscaled 4x, as a `folder` dataset (void 11 = ignore)."""
    from PIL import Image

    from sceneparse.data.labels import CAMVID_CLASSES, CAMVID_PALETTE

    pairs = sorted((SAMPLES / "camvid" / "CamVid" / "train").glob("*.png"))[:2]
    for split in ("train", "val"):
        (root / split / "images").mkdir(parents=True)
        (root / split / "masks").mkdir(parents=True)
        for image in pairs:
            mask = image.parent.parent / "trainannot" / image.name
            Image.open(image).resize((120, 90), Image.BILINEAR).save(root / split / "images" / image.name)
            Image.open(mask).resize((120, 90), Image.NEAREST).save(root / split / "masks" / image.name)
    (root / "classes.yaml").write_text(yaml.safe_dump(
        {"names": list(CAMVID_CLASSES), "colors": [list(c) for c in CAMVID_PALETTE], "ignore_index": 11}))
    return root


def test_loop_learns_two_real_images(tmp_path):
    """A small model memorises two real CamVid frames (at 90x120) to > 95% pixel accuracy."""
    root = two_frame_folder(tmp_path / "data")
    cfg = load_config(write_config(tmp_path), [
        "dataset=folder", f"root={root}", "val_split=val", "crop_size=[90, 120]", "scale=[1.0, 1.0]",
        "flip=false", "eval_size=[]", "iterations=120", "eval_interval=1000", "lr=0.01",
        "model_options={width: 8}", "log_interval=20"])
    result = train_mod.train(cfg, tmp_path / "overfit")
    assert result["metrics"]["pixel_acc"] > 0.95, result["metrics"]["pixel_acc"]


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_signal_to_the_process_group_saves_last_and_exits_cleanly(tmp_path, sig):
    """Ctrl-C in a terminal or a scheduler's SIGTERM reaches the data workers too: the run still
    writes last.pt at the iteration it reached and says how to resume, without a traceback (a
    worker killed first used to make the main process raise from inside backward())."""
    import signal
    import time

    cfg = write_config(tmp_path, iterations=100000, workers=1, eval_interval=100000, log_interval=1)
    log = tmp_path / "stderr.txt"
    with log.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "sceneparse", "train", str(cfg), "--out",
                                 str(tmp_path / "run")], stderr=err, start_new_session=True)
        deadline = time.time() + 120
        while "iter 3/" not in log.read_text() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        os.killpg(proc.pid, getattr(signal, sig))
        assert proc.wait(timeout=120) == 130  # the shell's code for a run stopped by a signal
    text = log.read_text()
    assert "Traceback" not in text and "stopped at iteration" in text, text[-2000:]
    reached = int(text.split("stopped at iteration ")[1].split("/")[0])
    assert reached >= 3
    assert load_checkpoint(tmp_path / "run" / "last.pt")["train_state"]["iteration"] == reached


def test_a_last_partial_epoch_is_evaluated_and_saved(tmp_path):
    """4 iterations of 3 per epoch: the final model is scored and saved, not only the epoch-3 one."""
    cfg = load_config(write_config(tmp_path), ["batch_size=1", "iterations=4", "eval_interval=1"])
    train_mod.train(cfg, tmp_path / "run")
    evaluated = [r["iteration"] for r in runlog.read_log(tmp_path / "run" / "log.csv", 10**9)
                 if r["val_miou"] is not None]
    assert evaluated == [3, 4]
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    assert last["train_state"]["iteration"] == 4
    assert last["metrics"]["miou"] == pytest.approx(
        runlog.read_log(tmp_path / "run" / "log.csv", 10**9)[-1]["val_miou"], abs=1e-4)


def _weights(path: Path) -> dict:
    return load_checkpoint(path)["state_dict"]


@pytest.mark.parametrize("extra", [{}, {"ema_decay": 0.8, "ohem_keep": 0.3}], ids=["plain", "ema+ohem"])
def test_resume_is_exact(tmp_path, extra):
    cfg_path = write_config(tmp_path, iterations=5, eval_interval=2, **extra)
    whole, split = tmp_path / "whole", tmp_path / "split"
    train_mod.train(load_config(cfg_path), whole)
    first = train_mod.train(load_config(cfg_path), split, stop_after=2)
    assert first["interrupted"] and load_checkpoint(split / "last.pt")["train_state"]["iteration"] == 2
    train_mod.train(load_config(cfg_path), split, resume="auto", stop_after=3)  # resumed twice
    train_mod.train(load_config(cfg_path), split, resume="auto")
    with (whole / "log.csv").open() as f, (split / "log.csv").open() as g:
        whole_log, split_log = list(csv.DictReader(f)), list(csv.DictReader(g))
    assert [r["iteration"] for r in split_log] == [r["iteration"] for r in whole_log] == \
        ["1", "2", "2", "3", "4", "4", "5", "5"]  # a row per iteration, one per evaluation
    assert [r["loss"] for r in split_log] == [r["loss"] for r in whole_log]
    a, b = _weights(whole / "last.pt"), _weights(split / "last.pt")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]
    ts_a, ts_b = (load_checkpoint(run / "last.pt")["train_state"] for run in (whole, split))
    assert ts_b["iteration"] == 5
    if extra:  # the saved weights are the average; training continues from the raw ones
        assert all(torch.equal(ts_a["raw_state_dict"][k], ts_b["raw_state_dict"][k]) for k in a)
        assert not all(torch.equal(a[k], ts_a["raw_state_dict"][k]) for k in a)


def test_crop_schedule_and_onecycle_resume_exactly_across_the_crop_change(tmp_path, monkeypatch):
    """Small crops first: the loader is rebuilt mid-epoch at the stage change, and a run stopped
    exactly there resumes with the same crops, learning rates, losses and weights."""
    shapes = []
    real = train_mod.make_loss_fn

    def recording_loss_fn(*args, **kwargs):
        loss_fn = real(*args, **kwargs)

        def recorded(images, masks):
            shapes.append(tuple(images.shape[-2:]))
            return loss_fn(images, masks)

        return recorded

    monkeypatch.setattr(train_mod, "make_loss_fn", recording_loss_fn)
    cfg_path = write_config(tmp_path, model="dabnet", batch_size=1, iterations=5, val_split="",
                            model_options={"width1": 4, "width2": 8, "dilations1": [2], "dilations2": [4]},
                            crop_schedule=[[0.3, 48, 64]], lr_schedule="onecycle")
    whole, split = tmp_path / "whole", tmp_path / "split"
    train_mod.train(load_config(cfg_path), whole)
    assert shapes == [(48, 64)] * 2 + [(64, 80)] * 3  # iterations < 0.3 * 5 use the small crop
    train_mod.train(load_config(cfg_path), split, stop_after=2)  # 3 iterations per epoch: mid-epoch
    train_mod.train(load_config(cfg_path), split, resume="auto")
    assert shapes[5:] == shapes[:5]
    with (whole / "log.csv").open() as f, (split / "log.csv").open() as g:
        whole_log, split_log = list(csv.DictReader(f)), list(csv.DictReader(g))
    assert [(r["loss"], r["lr"]) for r in split_log] == [(r["loss"], r["lr"]) for r in whole_log]
    a, b = _weights(whole / "last.pt"), _weights(split / "last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_learning_rate_schedules():
    cfg = load_config(Path(__file__).parents[1] / "configs" / "camvid_dabnet_quick.yaml",
                      ["iterations=100", "epochs=0", "lr=0.1", "warmup_iters=10"])
    poly = [schedule.learning_rate(cfg, i, 100) for i in range(100)]
    assert poly[0] == pytest.approx(0.1 * 0.1) and poly[9] == pytest.approx(0.1 * 0.91 ** 0.9)
    assert poly[50] == pytest.approx(0.1 * 0.5 ** 0.9)
    cfg.lr_schedule = "onecycle"
    one = [schedule.learning_rate(cfg, i, 100) for i in range(101)]
    assert one[0] == pytest.approx(0.1 / 25) and one[30] == pytest.approx(0.1) and max(one) == one[30]
    assert one[15] == pytest.approx((0.1 / 25 + 0.1) / 2)  # half-way up the cosine
    assert one[100] == pytest.approx(0.1 / 25 / 1e4)
    assert all(x > y for x, y in zip(one[30:], one[31:])) and all(x < y for x, y in zip(one[:30], one[1:31]))


@pytest.mark.parametrize("schedule, message", [
    ([[0.5, 96, 64]], "crop 96x64 must fit in crop_size 64x80"),
    ([[0.6, 32, 40], [0.4, 48, 64]], "fractions must increase"),
    ([[0.5, 32]], r"takes \[until_fraction, H, W\] entries"),
])
def test_bad_crop_schedule_is_a_config_error(tmp_path, schedule, message):
    with pytest.raises(SceneparseError, match=message):
        load_config(write_config(tmp_path, crop_schedule=schedule))


def test_hard_pixel_loss_averages_the_hardest_labelled_pixels():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 3, 5, requires_grad=True)
    target = torch.randint(0, 4, (2, 3, 5))
    target[0, 0] = 255
    per_pixel = torch.nn.functional.cross_entropy(logits, target, ignore_index=255, reduction="none")
    labelled = per_pixel[target != 255]  # 25 pixels
    assert losses.HardPixelLoss(1.0)(logits, target).item() == pytest.approx(labelled.mean().item())
    hardest = labelled.sort(descending=True).values[:10]  # int(0.4 * 25)
    assert losses.HardPixelLoss(0.4)(logits, target).item() == pytest.approx(hardest.mean().item())
    nothing = losses.HardPixelLoss(0.5)(logits, torch.full_like(target, 255))
    nothing.backward()
    assert nothing.item() == 0 and logits.grad is not None


def test_weight_average_follows_the_decay_and_copies_integer_buffers():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.BatchNorm2d(2))
    ema = WeightAverage(model, decay=0.9)
    start = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    model[1].num_batches_tracked += 7
    ema.update(step=10**6)  # past the ramp: decay 0.9
    assert torch.allclose(ema.model[0].weight, start + 0.1)
    assert ema.model[1].num_batches_tracked.item() == 7
    ema.update(step=0)  # the ramp: decay 1/10
    assert torch.allclose(ema.model[0].weight, (start + 0.1) * 0.1 + (start + 1) * 0.9)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    out = tmp_path / "nan"
    real = train_mod.make_loss_fn
    calls = {"n": 0}

    def poisoned_loss_fn(*args, **kwargs):
        loss_fn = real(*args, **kwargs)

        def poisoned(images, masks):
            calls["n"] += 1
            loss = loss_fn(images, masks)
            return loss * float("nan") if calls["n"] == 3 else loss

        return poisoned

    monkeypatch.setattr(train_mod, "make_loss_fn", poisoned_loss_fn)
    cfg = load_config(write_config(tmp_path, iterations=5, val_split=""))
    with pytest.raises(SceneparseError, match="loss became nan at iteration 2"):
        train_mod.train(cfg, out)
    # One iteration per epoch here, so last.pt was written after iteration 2 and not after the bad step.
    assert load_checkpoint(out / "last.pt")["train_state"]["iteration"] == 2


def test_set_rejects_unknown_keys_and_wrong_types(tmp_path):
    path = write_config(tmp_path)
    with pytest.raises(SceneparseError, match="unknown key 'learning_rate'.*valid keys: model"):
        load_config(path, ["learning_rate=0.1"])
    with pytest.raises(SceneparseError, match="'batch_size' must be int, got str"):
        load_config(path, ["batch_size=eight"])
    with pytest.raises(SceneparseError, match="'flip' must be bool"):
        load_config(path, ["flip=3"])
    cfg = load_config(path, ["lr=1e-3", "crop_size=[32, 48]", "optimizer=sgd"])
    assert cfg.lr == 0.001 and cfg.crop_size == [32, 48] and cfg.optimizer == "sgd"


def test_cli_reports_config_errors_in_one_line(tmp_path, capsys):
    code = main(["train", str(write_config(tmp_path)), "--set", "nope=1", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("sceneparse: error:") and "\n" not in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04garbage", None])
def test_bad_checkpoint_is_a_one_line_error(tmp_path, content, capsys):
    path = tmp_path / "bad.pt"
    if content is None:
        torch.save({"weights": torch.zeros(2)}, path)  # a real torch file, but not ours
    else:
        path.write_bytes(content)
    with pytest.raises(SceneparseError, match=str(path)):
        load_checkpoint(path)
    assert main(["evaluate", "--checkpoint", str(path), "--dataset", "camvid", "--root",
                 str(SAMPLES / "camvid")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "bad.pt" in err


def test_truncated_checkpoint_is_a_one_line_error(tmp_path, capsys):
    out = tmp_path / "run"
    train_mod.train(load_config(write_config(tmp_path, iterations=1, val_split="")), out)
    done = capsys.readouterr().err.splitlines()[-1]  # not "best val mIoU -1.0000 at iteration -1"
    assert done.startswith("done: 1 iterations in") and "; no validation (no val split); peak memory" in done
    data = (out / "last.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(SceneparseError, match="cut.pt: not a readable checkpoint"):
        load_checkpoint(tmp_path / "cut.pt")


def _torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "sceneparse", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_distributed_evaluation_equals_single_process_and_training_writes_one_checkpoint(tmp_path):
    cfg_path = write_config(tmp_path, iterations=2, val_split="train", batch_size=1)
    run = _torchrun(["train", str(cfg_path), "--out", str(tmp_path / "ddp")], tmp_path)
    assert run.returncode == 0, run.stderr[:3000]
    ckpt = load_checkpoint(tmp_path / "ddp" / "last.pt")
    assert ckpt["train_state"]["iteration"] == 2
    assert sorted(p.name for p in (tmp_path / "ddp").glob("*.pt")) == ["best.pt", "last.pt"]

    single = tmp_path / "single"
    assert main(["evaluate", "--checkpoint", str(tmp_path / "ddp" / "last.pt"), "--split", "train",
                 "--out", str(single)]) == 0
    run = _torchrun(["evaluate", "--checkpoint", str(tmp_path / "ddp" / "last.pt"), "--split", "train",
                     "--out", str(tmp_path / "multi")], tmp_path)
    assert run.returncode == 0, run.stderr[:3000]
    a = json.loads((single / "metrics.json").read_text())["confusion_matrix"]
    b = json.loads((tmp_path / "multi" / "metrics.json").read_text())["confusion_matrix"]
    assert a == b and sum(map(sum, a)) > 0


def test_label_set_categories_scores_a_hand_made_prediction(tmp_path, monkeypatch):
    """A 4x4 Cityscapes frame: top half road, bottom-left sidewalk, bottom-right car. The prediction
    says sidewalk on top (right category: flat), truck bottom-left (wrong: vehicle) and car
    bottom-right. By hand: flat IoU 8/12, vehicle IoU 4/8, category mIoU 7/12; classes: road 0,
    sidewalk 0, car 1, truck 0 (absent in the truth, present in the prediction), mIoU 1/4."""
    import numpy as np
    from PIL import Image

    from sceneparse.data.labels import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE
    from sceneparse import evaluate as evaluate_mod
    from sceneparse.checkpoint import make_checkpoint, save_checkpoint
    from sceneparse.models import build_model

    root = tmp_path / "cityscapes"
    for kind, suffix, array in (
            ("leftImg8bit", "leftImg8bit", np.zeros((4, 4, 3), np.uint8)),
            ("gtFine", "gtFine_labelIds", np.array([[7] * 4, [7] * 4, [8, 8, 26, 26], [8, 8, 26, 26]], np.uint8))):
        path = root / kind / "val" / "town" / f"town_000000_000000_{suffix}.png"
        path.parent.mkdir(parents=True)
        Image.fromarray(array).save(path)
    road, sidewalk, car, truck = (CITYSCAPES_CLASSES.index(n) for n in ("road", "sidewalk", "car", "truck"))
    predicted = torch.tensor([[sidewalk] * 4, [sidewalk] * 4, [truck, truck, car, car], [truck, truck, car, car]])
    logits = torch.nn.functional.one_hot(predicted, 19).permute(2, 0, 1)[None].float()
    monkeypatch.setattr(evaluate_mod, "load_network", lambda *args: ((lambda x: logits), "torch"))
    ckpt = make_checkpoint("segnet_basic", 19, {}, build_model("segnet_basic", 19).state_dict(),
                           list(CITYSCAPES_CLASSES), CITYSCAPES_PALETTE, dataset="cityscapes", label_set="classes")
    save_checkpoint(ckpt, tmp_path / "model.pt")
    args = ["evaluate", "--checkpoint", str(tmp_path / "model.pt"), "--dataset", "cityscapes", "--root", str(root),
            "--split", "val"]
    assert main(args + ["--out", str(tmp_path / "classes")]) == 0
    classes = json.loads((tmp_path / "classes" / "metrics.json").read_text())
    assert classes["miou"] == pytest.approx(1 / 4)
    assert main(args + ["--label-set", "categories", "--out", str(tmp_path / "cats")]) == 0
    cats = json.loads((tmp_path / "cats" / "metrics.json").read_text())
    assert cats["per_class"]["flat"]["iou"] == pytest.approx(8 / 12)
    assert cats["per_class"]["vehicle"]["iou"] == pytest.approx(4 / 8)
    assert cats["miou"] == pytest.approx(7 / 12) and cats["setup"]["label_set"] == "categories"


def test_enet_class_weights_are_milder_than_median_frequency(samples):
    from sceneparse.data import build_dataset
    from sceneparse.data.stats import class_statistics
    from sceneparse.training.config import TrainConfig

    ds = build_dataset("camvid", samples / "camvid", "train")
    enet = losses.class_weights(TrainConfig(class_weights="enet", iterations=1), ds)
    median = losses.class_weights(TrainConfig(class_weights="median_freq", iterations=1), ds)
    assert torch.allclose(enet, torch.tensor(class_statistics(ds)["enet_weights"]))
    seen = median > 0
    assert enet[seen].max() / enet[seen].min() < median[seen].max() / median[seen].min()
    assert losses.class_weights(TrainConfig(iterations=1), ds) is None
