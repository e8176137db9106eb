"""`sceneparse data verify|show|stats`, run in-process through the CLI."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sceneparse.cli import main
from sceneparse.data import build_dataset
from sceneparse.data.stats import class_statistics, load_weights
from sceneparse.utils import SceneparseError
from sceneparse.viz import colorize


def write_folder(root: Path, masks: dict[str, np.ndarray]) -> None:
    (root / "train" / "images").mkdir(parents=True)
    (root / "train" / "masks").mkdir(parents=True)
    (root / "classes.yaml").write_text("names: [road, car, sky]\n"
                                      "colors: [[128, 64, 128], [0, 0, 142], [70, 130, 180]]\n")
    for stem, mask in masks.items():
        Image.fromarray(np.zeros(mask.shape + (3,), dtype=np.uint8)).save(root / "train" / "images" / f"{stem}.png")
        Image.fromarray(mask).save(root / "train" / "masks" / f"{stem}.png")


def verify(capsys, *args: str) -> tuple[int, str, str]:
    """Exit code, stdout with runs of spaces collapsed (table layout aside), stderr."""
    code = main(["data", "verify", *args])
    out = capsys.readouterr()
    return code, "\n".join(" ".join(line.split()) for line in out.out.splitlines()), out.err


def test_verify_bundled_samples(capsys, samples):
    code, out, _ = verify(capsys, "--dataset", "camvid", "--root", str(samples / "camvid"), "--split", "train")
    assert code == 0
    assert "train 3 0 480x360 (3)" in out and "OK: 3 pairs in 1 split" in out
    assert "road" in out and "(ignore)" in out
    code, out, _ = verify(capsys, "--dataset", "cityscapes_pairs", "--root", str(samples / "cityscapes_pairs"))
    assert code == 0 and "256x256 (3)" in out and "256x256 (1)" in out
    assert "label pixels farther than 40 from every Cityscapes colour (ignored): train" in out
    code, out, _ = verify(capsys, "--dataset", "cityscapes", "--root", str(samples / "cityscapes"),
                          "--label-set", "categories")
    assert code == 0 and "7 classes (categories)" in out and "train absent" in out and "vehicle" in out


def test_verify_reports_every_problem_and_exits_1(capsys, tmp_path):
    good = np.array([[0, 1], [2, 255]], dtype=np.uint8)
    write_folder(tmp_path, {"a": good, "b": good, "c": np.array([[0, 7], [1, 1]], dtype=np.uint8)})
    (tmp_path / "train" / "masks" / "a.png").unlink()                                  # image without mask
    (tmp_path / "train" / "images" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")  # unreadable image
    Image.fromarray(good).save(tmp_path / "train" / "masks" / "d.png")                 # mask without image
    code, out, _ = verify(capsys, "--dataset", "folder", "--root", str(tmp_path), "--split", "train")
    assert code == 1
    assert "a.png: image without mask" in out
    assert "images/b.png: unreadable or corrupt image" in out
    assert "masks/c.png: label value 7 is neither a class id nor the ignore value" in out
    assert "masks/d.png: mask without image" in out
    assert "FAILED: 4 problems" in out


def test_verify_flags_swapped_pair_halves(capsys, tmp_path, samples):
    (tmp_path / "val").mkdir()
    composite = np.asarray(Image.open(samples / "cityscapes_pairs" / "train" / "2.jpg"))
    swapped = np.concatenate([composite[:, 256:], composite[:, :256]], axis=1)
    Image.fromarray(swapped).save(tmp_path / "val" / "1.png")
    shutil.copy(samples / "cityscapes_pairs" / "val" / "1.jpg", tmp_path / "val" / "2.jpg")
    code, out, _ = verify(capsys, "--dataset", "cityscapes_pairs", "--root", str(tmp_path), "--split", "val")
    assert code == 1 and "1.png: the right half matches the Cityscapes colours no better than the left" in out
    assert "FAILED: 1 problem" in out


def test_verify_shared_data(capsys, shared_data):
    code, out, _ = verify(capsys, "--dataset", "camvid", "--root", str(shared_data / "camvid_segnet"),
                          "--split", "val")
    assert code == 0 and "val 101 0 480x360 (101)" in out
    code, out, _ = verify(capsys, "--dataset", "cityscapes_pairs", "--split", "val",
                          "--root", str(shared_data / "cityscapes_pix2pix" / "cityscapes"))
    assert code == 0 and "val 500 0 256x256 (500)" in out
    print(out)


@pytest.mark.parametrize("args, message", [
    (["--dataset", "camvidd", "--root", "."], "unknown dataset 'camvidd' (choose from camvid,"),
    (["--dataset", "camvid", "--root", "/no/such/folder"], "/no/such/folder: camvid dataset root not found"),
])
def test_cli_errors_are_one_line(capsys, args, message):
    for command in ("verify", "stats"):
        assert main(["data", command, *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("sceneparse: error: ") and message in err and err.count("\n") == 1


def test_show_writes_images_beside_colourised_labels(capsys, tmp_path, samples):
    out = tmp_path / "grid.png"
    assert main(["data", "show", "--dataset", "cityscapes", "--root", str(samples / "cityscapes"),
                 "--out", str(out), "--num", "3"]) == 0
    assert "wrote" in capsys.readouterr().out
    grid = np.asarray(Image.open(out).convert("RGB"))
    image, mask = build_dataset("cityscapes", samples / "cityscapes", "val").load(0)
    assert np.array_equal(grid[:128, :256], image)  # one frame in the val split (--num is capped)
    assert np.array_equal(grid[:128, 260:516], colorize(mask, build_dataset(
        "cityscapes", samples / "cityscapes", "val").palette))
    assert grid.shape[1] > 516 + 50  # the legend strip on the right
    legend = grid[:, 516:]
    assert (legend == (0, 0, 142)).all(-1).any() and not (legend == (0, 0, 230)).all(-1).any()  # car, no motorcycle


def test_stats_median_frequency_weights(capsys, tmp_path):
    write_folder(tmp_path, {"a": np.array([[0, 0], [1, 255]], dtype=np.uint8),
                            "b": np.array([[0, 2], [2, 2]], dtype=np.uint8)})
    out = tmp_path / "weights.json"
    assert main(["data", "stats", "--dataset", "folder", "--root", str(tmp_path), "--out", str(out)]) == 0
    stats = json.loads(out.read_text())
    # road: 3 of 8 pixels (both images), car: 1 of 4 (image a), sky: 3 of 4 (image b); median 0.375
    assert stats["classes"] == ["road", "car", "sky"]
    assert stats["frequencies"] == pytest.approx([0.375, 0.25, 0.75])
    assert stats["weights"] == pytest.approx([1.0, 1.5, 0.5])
    assert load_weights(out, 3) == pytest.approx([1.0, 1.5, 0.5])
    assert "weights.json" in capsys.readouterr().out
    # ENet's weights from the shares of the 7 labelled pixels: road 3/7, car 1/7, sky 3/7
    assert stats["enet_weights"] == pytest.approx([1 / math.log(1.10 + 3 / 7), 1 / math.log(1.10 + 1 / 7),
                                                   1 / math.log(1.10 + 3 / 7)])


def test_stats_absent_class_gets_zero_weight(tmp_path):
    write_folder(tmp_path, {"a": np.array([[0, 0, 1, 1]], dtype=np.uint8)})
    stats = class_statistics(build_dataset("folder", tmp_path, "train"))
    assert stats["weights"] == pytest.approx([1.0, 1.0, 0.0]) and stats["frequencies"][2] == 0


@pytest.mark.parametrize("content, message", [
    (None, "class weights file not found"),
    ("not json", "expected JSON with a \"weights\" list"),
    ('{"weights": [1, 2]}', "\"weights\" must be 3 non-negative numbers"),
    ('{"weights": [1, -2, 3]}', "\"weights\" must be 3 non-negative numbers"),
])
def test_load_weights_errors(tmp_path, content, message):
    path = tmp_path / "w.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SceneparseError, match=message) as e:
        load_weights(path, 3)
    assert str(path) in str(e.value) and "\n" not in str(e.value)
