"""The trained models shipped in the package (made by tools/ship_builtin.py)."""
import json
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sceneparse.cli import main
from sceneparse.checkpoint import BUILTIN, WEIGHTS_DIR, load_checkpoint
from sceneparse.inference import Segmenter

from conftest import SAMPLES

SHIPPED = ["camvid", "cityscapes"]  # every name here must be in the package; the test fails if its files are missing
DATA = {"camvid": "camvid_segnet", "cityscapes": "cityscapes_pix2pix/cityscapes"}


def reference(name: str) -> dict:
    return json.loads((WEIGHTS_DIR / f"{name}_reference.json").read_text())


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to open a network connection fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("a built-in model tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize("name", SHIPPED)
def test_builtin_is_small_slim_and_predicts_its_reference(name, offline):
    path = WEIGHTS_DIR / BUILTIN[name]
    assert path.stat().st_size <= 10 * 2**20
    ckpt = load_checkpoint(name)
    assert "train_state" not in ckpt and ckpt["metrics"]["setup"]["checkpoint"] == name
    ref = reference(name)
    photo = SAMPLES / ref["photo"].removeprefix("samples/")
    expected = np.asarray(Image.open(WEIGHTS_DIR / ref["prediction"]))
    labels = Segmenter.from_checkpoint(name).predict(photo)
    assert labels.shape == expected.shape == tuple(ref["size"]) == Image.open(photo).size[::-1]
    assert (labels == expected).mean() >= 0.99


def test_camvid_is_the_default(tmp_path, offline):
    photo = SAMPLES / reference("camvid")["photo"].removeprefix("samples/")
    assert main(["predict", str(photo), "--out", str(tmp_path), "--outputs", "index,overlay"]) == 0
    labels = np.asarray(Image.open(tmp_path / f"{photo.stem}_index.png"))
    assert (labels == np.asarray(Image.open(WEIGHTS_DIR / "camvid_reference.png"))).mean() >= 0.99
    assert Image.open(tmp_path / f"{photo.stem}_overlay.jpg").size == Image.open(photo).size


@pytest.mark.parametrize("name", SHIPPED)
def test_builtin_reproduces_its_per_image_numbers(name, shared_data, tmp_path):
    ref = reference(name)["per_image"]
    root = shared_data / DATA[name]
    if not root.is_dir():
        pytest.skip(f"{root} is absent")
    images = ref["images"]
    assert len(images) == 10
    args = ["evaluate", "--checkpoint", name, "--dataset", ref["dataset"], "--root", str(root),
            "--split", ref["split"], "--limit", str(len(images)), "--per-image", "--out", str(tmp_path)]
    assert main(args) == 0
    got = json.loads((tmp_path / "per_image.json").read_text())
    assert [Path(r["image"]).name for r in got] == [r["image"] for r in images]
    for mine, stored in zip(got, images):
        assert mine["miou"] == pytest.approx(stored["miou"], abs=2e-3), stored["image"]
        assert mine["pixel_acc"] == pytest.approx(stored["pixel_acc"], abs=2e-3), stored["image"]


def test_demo_writes_the_overlay_of_the_bundled_photo(tmp_path, offline):
    assert main(["demo", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["street_color.png", "street_index.png", "street_overlay.jpg"]
    labels = np.asarray(Image.open(tmp_path / "street_index.png"))
    assert (labels == np.asarray(Image.open(WEIGHTS_DIR / "camvid_reference.png"))).mean() >= 0.99


def test_cityscapes_builtin_writes_cityscapes_colours_and_label_ids(tmp_path, offline):
    """`--checkpoint cityscapes`: a pix2pix-trained model; any photo is resized to its 256x256 for the
    network and the outputs have the photo's own size; `--cityscapes-ids` writes official labelIds."""
    from sceneparse.data.labels import CITYSCAPES_LABELS, CITYSCAPES_PALETTE

    ckpt = load_checkpoint("cityscapes")
    assert ckpt["dataset"]["photo_size"] == [256, 256] and len(ckpt["classes"]) == 19
    photo = SAMPLES / "cityscapes" / "leftImg8bit" / "val" / "frankfurt" / "frankfurt_000000_000294_leftImg8bit.png"
    assert main(["predict", str(photo), "--checkpoint", "cityscapes", "--out", str(tmp_path),
                 "--outputs", "index,color", "--cityscapes-ids"]) == 0
    index = np.asarray(Image.open(tmp_path / f"{photo.stem}_index.png"))
    color = np.asarray(Image.open(tmp_path / f"{photo.stem}_color.png").convert("RGB"))
    ids = np.asarray(Image.open(tmp_path / "labelIds" / f"{photo.stem}.png"))
    assert index.shape == ids.shape == color.shape[:2] == Image.open(photo).size[::-1]
    assert np.array_equal(color, np.array(CITYSCAPES_PALETTE, dtype=np.uint8)[index])
    to_id = {lab.train_id: lab.id for lab in CITYSCAPES_LABELS if 0 <= lab.train_id < 255}
    assert np.array_equal(ids, np.vectorize(to_id.get)(index))
    # the same frame as the pix2pix photo: mostly the same labels, from a 4x larger photo
    small = np.asarray(Image.fromarray(index.astype(np.uint8)).resize((256, 256), Image.NEAREST))
    assert (small == np.asarray(Image.open(WEIGHTS_DIR / "cityscapes_reference.png"))).mean() > 0.8


def test_models_lists_every_builtin_with_its_scores(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in SHIPPED:
        ckpt = load_checkpoint(name)
        line = next(l for l in out.splitlines() if l.startswith(name + " "))
        assert f"{ckpt['metrics']['miou']:.4f}" in line
