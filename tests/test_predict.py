"""`sceneparse predict`: names, sizes and contents of the outputs; unreadable inputs; Cityscapes ids."""
import numpy as np
import pytest
import torch
from PIL import Image

from sceneparse.cli import main
from sceneparse.data.labels import CITYSCAPES_CLASSES, CITYSCAPES_LABELS, CITYSCAPES_PALETTE
from sceneparse.checkpoint import make_checkpoint, save_checkpoint
from sceneparse.inference import Segmenter
from sceneparse.models import build_model

from conftest import CLASSES, PALETTE


pytestmark = pytest.mark.usefixtures("one_thread")


def _checkpoint(path, classes, palette, dataset, seed=0):
    torch.manual_seed(seed)
    model = build_model("segnet_basic", len(classes))
    for m in model.modules():  # BN statistics from noise: outputs that vary over the image
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    with torch.no_grad():
        model.train()(torch.randn(2, 3, 64, 80))
    save_checkpoint(make_checkpoint("segnet_basic", len(classes), {}, model.eval().state_dict(), classes, palette,
                                    dataset=dataset, label_set="classes"), path)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return _checkpoint(tmp_path_factory.mktemp("ckpt") / "camvid.pt", CLASSES, PALETTE, "camvid")


def _photo(path, h, w, seed):
    array = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return array


def test_folder_of_mixed_sizes(checkpoint, tmp_path, capsys):
    photos = tmp_path / "photos"
    sizes = {"a.png": (45, 67), "sub/b.jpg": (64, 48), "sub/deeper/c.png": (37, 101)}
    for i, (name, (h, w)) in enumerate(sizes.items()):
        _photo(photos / name, h, w, i)
    (photos / "notes.txt").write_text("not an image")  # folders are searched for images only
    out = tmp_path / "out"
    assert main(["predict", str(photos), "--checkpoint", str(checkpoint), "--out", str(out)]) == 0
    seg = Segmenter.from_checkpoint(checkpoint)
    palette = {tuple(c) for c in PALETTE}
    for name, (h, w) in sizes.items():
        stem = out / name.rsplit(".", 1)[0]
        index = np.asarray(Image.open(f"{stem}_index.png"))
        color = np.asarray(Image.open(f"{stem}_color.png"))
        overlay = Image.open(f"{stem}_overlay.jpg")
        assert index.shape == (h, w) and color.shape == (h, w, 3) and overlay.size == (w, h)
        assert overlay.format == "JPEG"
        assert np.array_equal(index, seg.predict(photos / name))
        assert len(np.unique(index)) > 1  # a real segmentation, not a constant map
        assert {tuple(c) for c in color.reshape(-1, 3)} <= palette
        assert np.array_equal(color, np.asarray(PALETTE, dtype=np.uint8)[index])
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == sorted(
        f"{n.rsplit('/', 1)[-1].rsplit('.', 1)[0]}_{kind}" for n in sizes
        for kind in ("index.png", "color.png", "overlay.jpg"))


def test_outputs_inside_the_input_folder_are_not_inputs(checkpoint, tmp_path):
    _photo(tmp_path / "a.png", 40, 52, 0)
    args = ["predict", str(tmp_path), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "pred")]
    assert main(args) == 0
    assert main(args) == 0  # the second run must not segment the first run's pictures
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == ["a_color.png", "a_index.png",
                                                                     "a_overlay.jpg"]


def test_files_globs_outputs_subset_and_legend(checkpoint, tmp_path):
    _photo(tmp_path / "in" / "x1.png", 40, 52, 0)
    _photo(tmp_path / "in" / "x2.png", 40, 52, 1)
    _photo(tmp_path / "other" / "y.png", 50, 60, 2)
    out = tmp_path / "out"
    code = main(["predict", str(tmp_path / "in" / "x*.png"), str(tmp_path / "other" / "y.png"), "--checkpoint",
                 str(checkpoint), "--out", str(out), "--outputs", "overlay", "--legend", "--batch-size", "2"])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["x1_overlay.jpg", "x2_overlay.jpg", "y_overlay.jpg"]
    with_legend = Image.open(out / "y_overlay.jpg")
    assert with_legend.width > 60 and with_legend.height >= 50  # the legend is beside the 50x60 picture


def test_unreadable_input_is_skipped_and_listed(checkpoint, tmp_path, capsys):
    photos = tmp_path / "photos"
    _photo(photos / "good1.png", 40, 50, 0)
    (photos / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    _photo(photos / "good2.png", 44, 50, 1)
    out = tmp_path / "out"
    code = main(["predict", str(photos), str(tmp_path / "missing.jpg"), "--checkpoint", str(checkpoint),
                 "--out", str(out)])
    assert code == 1
    for stem in ("good1", "good2"):
        for kind in ("index.png", "color.png", "overlay.jpg"):
            assert (out / f"{stem}_{kind}").is_file()
    assert not list(out.glob("broken*"))
    err = capsys.readouterr().err
    tail = err[err.index("2 input(s) skipped"):]
    assert "broken.png" in tail and "missing.jpg" in tail


def test_bad_options_exit_2(checkpoint, tmp_path, capsys):
    _photo(tmp_path / "a.png", 40, 40, 0)
    args = ["predict", str(tmp_path / "a.png"), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o")]
    assert main(args + ["--outputs", "index,mask"]) == 2
    assert "--outputs" in capsys.readouterr().err
    assert main(args + ["--mode", "slide"]) == 2
    assert "--crop" in capsys.readouterr().err
    assert main(args + ["--cityscapes-ids"]) == 2  # a CamVid model has no Cityscapes label ids
    assert "Cityscapes" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "nothing*.png"), "--checkpoint", str(checkpoint)]) == 2
    assert main(args + ["--resize", "big"]) == 2
    assert "--resize big: expected a size" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_resize_option(checkpoint, tmp_path):
    image = _photo(tmp_path / "in" / "a.png", 64, 128, 5)
    for size in ("48x48", "native"):
        assert main(["predict", str(tmp_path / "in"), "--checkpoint", str(checkpoint), "--out",
                     str(tmp_path / size), "--outputs", "index", "--resize", size]) == 0
    seg = Segmenter.from_checkpoint(checkpoint, resize=(48, 48))
    resized = np.asarray(Image.open(tmp_path / "48x48" / "a_index.png"))
    assert resized.shape == (64, 128) and np.array_equal(resized, seg.predict(image))
    native = np.asarray(Image.open(tmp_path / "native" / "a_index.png"))
    assert np.array_equal(native, Segmenter.from_checkpoint(checkpoint).predict(image))
    assert (native != resized).mean() > 0.05


def test_cityscapes_label_ids(tmp_path):
    ckpt = _checkpoint(tmp_path / "cs.pt", list(CITYSCAPES_CLASSES), CITYSCAPES_PALETTE, "cityscapes")
    _photo(tmp_path / "in" / "frankfurt_000000_000294_leftImg8bit.png", 48, 96, 3)
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path / "in"), "--checkpoint", str(ckpt), "--out", str(out),
                 "--outputs", "index", "--cityscapes-ids"]) == 0
    train_ids = np.asarray(Image.open(out / "frankfurt_000000_000294_leftImg8bit_index.png"))
    label_ids = np.asarray(Image.open(out / "labelIds" / "frankfurt_000000_000294_leftImg8bit.png"))
    assert label_ids.shape == train_ids.shape == (48, 96)
    to_id = {lab.train_id: lab.id for lab in CITYSCAPES_LABELS if 0 <= lab.train_id < 255}
    assert len(np.unique(train_ids)) > 1
    assert np.array_equal(label_ids, np.vectorize(to_id.get)(train_ids))
    assert to_id[0] == 7 and to_id[18] == 33  # road and bicycle, as the official evaluator expects


def test_a_folder_of_images_and_videos(checkpoint, tmp_path):
    av = pytest.importorskip("av", reason='PyAV is not installed: pip install "sceneparse[video]"')
    _photo(tmp_path / "in" / "a.png", 40, 52, 0)
    frames = [np.random.default_rng(i).integers(0, 256, (48, 64, 3), dtype=np.uint8) for i in range(3)]
    (tmp_path / "in" / "sub").mkdir()
    with av.open(str(tmp_path / "in" / "sub" / "clip.mp4"), "w") as container:
        stream = container.add_stream("libx264", rate=5)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path / "in"), "--checkpoint", str(checkpoint), "--out", str(out),
                 "--outputs", "index,overlay"]) == 0
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        "a_index.png", "a_overlay.jpg", "sub/clip/000001_index.png", "sub/clip/000002_index.png",
        "sub/clip/000003_index.png", "sub/clip_overlay.mp4"]
