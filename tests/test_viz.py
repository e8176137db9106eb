import numpy as np
import pytest
import torch
from PIL import Image

from sceneparse import viz
from sceneparse.utils import SceneparseError

PALETTE = [(128, 64, 128), (244, 35, 232), (70, 70, 70), (220, 20, 60), (0, 0, 142)]
CLASSES = ["road", "sidewalk", "building", "person", "car"]


@pytest.fixture
def mask():
    rng = np.random.default_rng(0)
    m = rng.integers(0, len(PALETTE), (24, 32)).astype(np.uint8)
    m[:4] = 255  # ignore
    m[4, :5] = 9  # beyond the palette
    return m


@pytest.fixture
def photo():
    return np.random.default_rng(1).integers(0, 256, (24, 32, 3)).astype(np.uint8)


def test_colorize_round_trip(mask):
    colours = viz.colorize(mask, PALETTE)
    assert colours.shape == (24, 32, 3) and colours.dtype == np.uint8
    index = {c: i for i, c in enumerate(PALETTE)}
    decoded = np.array([index.get(tuple(c), 255) for c in colours.reshape(-1, 3)]).reshape(mask.shape)
    valid = mask < len(PALETTE)
    assert np.array_equal(decoded[valid], mask[valid])
    assert (colours[~valid] == 0).all()  # ignore and unknown values are black
    assert np.array_equal(viz.colorize(torch.from_numpy(mask).long(), PALETTE), colours)


def test_overlay(mask, photo):
    valid = mask < len(PALETTE)
    assert np.array_equal(viz.overlay(photo, mask, PALETTE, alpha=0.0), photo)
    full = viz.overlay(photo, mask, PALETTE, alpha=1.0)
    assert np.array_equal(full[valid], viz.colorize(mask, PALETTE)[valid])
    half = viz.overlay(photo, mask, PALETTE)
    assert np.array_equal(half[~valid], photo[~valid])  # ignore pixels keep the photo
    expected = np.rint(0.5 * photo[valid].astype(float) + 0.5 * viz.colorize(mask, PALETTE)[valid])
    assert np.abs(half[valid].astype(int) - expected).max() <= 1
    with pytest.raises(SceneparseError, match="shape"):
        viz.overlay(photo[:10], mask, PALETTE)


def test_legend_and_add_legend(photo):
    strip = viz.legend(CLASSES, PALETTE)
    pixels = np.asarray(strip)
    for colour in PALETTE:  # every swatch is drawn
        assert (pixels == colour).all(-1).any()
    assert viz.legend(CLASSES[:2], PALETTE[:2]).height < strip.height

    out = viz.add_legend(photo, CLASSES, PALETTE)
    assert out.shape[0] == max(photo.shape[0], strip.height)
    assert out.shape[1] == photo.shape[1] + strip.width
    assert np.array_equal(out[:24, :32], photo)
    only = viz.add_legend(photo, CLASSES, PALETTE, only=[4, 255, 4])  # 255 (ignore) has no entry
    assert (np.asarray(only) == PALETTE[4]).all(-1).any()
    assert not (np.asarray(only) == PALETTE[0]).all(-1).any()


def _png(path):
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.load()
        return image.size


def test_plot_confusion(tmp_path):
    matrix = torch.tensor([[50, 3, 0, 0, 1], [2, 40, 0, 0, 0], [0, 0, 0, 0, 0], [1, 0, 0, 7, 2], [0, 0, 0, 1, 30]])
    path = tmp_path / "cm" / "confusion.png"
    viz.plot_confusion(matrix, CLASSES, path)
    width, height = _png(path)
    assert 250 < width < 2000 and 250 < height < 2000
    assert [p.name for p in path.parent.iterdir()] == ["confusion.png"]
    with pytest.raises(SceneparseError, match="class names"):
        viz.plot_confusion(matrix, CLASSES[:3], tmp_path / "bad.png")


def test_plot_curves(tmp_path):
    rows = [{"iteration": i, "epoch": i // 10, "loss": 2.0 / (i + 1), "lr": 0.01 * (1 - i / 50)} for i in range(50)]
    rows += [{"iteration": 19, "epoch": 1, "val_miou": 0.31, "val_pixel_acc": 0.7},
             {"iteration": 39, "epoch": 3, "val_miou": 0.42, "val_pixel_acc": None}]
    path = tmp_path / "curves.png"
    viz.plot_curves(rows, path)
    width, height = _png(path)
    assert width > 2 * height > 300  # three panels side by side
    viz.plot_curves([{"epoch": 1, "loss": 1.0}], tmp_path / "epochs.png")  # no iterations, no validation
    assert _png(tmp_path / "epochs.png")[0] > 300


def test_grid(tmp_path, photo, mask):
    colours = viz.colorize(mask, PALETTE)
    out = viz.grid([[photo, colours], [photo[:10], mask]], tmp_path / "grid.png", gap=4)
    assert out.shape == (24 + 4 + 24, 32 * 2 + 4, 3)  # a row is as tall as its tallest image
    assert np.array_equal(out[:24, 36:], colours)
    assert np.array_equal(out[28:38, :32], photo[:10])
    assert (out[38:, :32] == 255).all()  # white below the shorter image
    assert np.array_equal(out[28:, 36:], np.repeat(mask[:, :, None], 3, 2))  # grey expanded to RGB
    assert np.array_equal(np.asarray(Image.open(tmp_path / "grid.png")), out)
    with pytest.raises(SceneparseError):
        viz.grid([], tmp_path / "empty.png")


def test_matplotlib_is_imported_lazily():
    import subprocess
    import sys

    code = "import sys, sceneparse.viz, sceneparse.metrics; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
