"""The trained models shipped in the package (made by tools/ship_builtin.py)."""
import json
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sceneparse.cli import main
from sceneparse.engine.checkpoint import BUILTIN, WEIGHTS_DIR, load_checkpoint
from sceneparse.inference import Segmenter

from conftest import SAMPLES

SHIPPED = ["camvid"]  # every name here must be in the package; the test fails if its files are missing
DATA = {"camvid": "camvid_segnet"}


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
