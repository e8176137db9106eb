"""Inference modes (whole, sliding window, multi-scale + flip) and the Segmenter API."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from sceneparse.checkpoint import make_checkpoint, save_checkpoint
from sceneparse.inference import Segmenter, infer, window_starts
from sceneparse.models import build_model
from sceneparse.utils import SceneparseError

from conftest import CLASSES, PALETTE, lively


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return lively(build_model("segnet_basic", len(CLASSES)))


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(make_checkpoint("segnet_basic", len(CLASSES), {}, model.state_dict(), CLASSES, PALETTE,
                                    dataset="camvid", label_set="classes"), path)
    return path


def test_window_starts_cover_the_image_and_end_at_the_border():
    assert window_starts(100, 100, 30) == [0]
    assert window_starts(60, 100, 30) == [0]
    assert window_starts(100, 40, 30) == [0, 30, 60]
    starts = window_starts(1024, 512, 341)
    assert starts == [0, 341, 512]


def test_slide_equals_whole_when_the_window_is_the_image(model):
    x = torch.randn(2, 3, 45, 61)
    whole = infer(model, x)
    assert torch.allclose(infer(model, x, mode="slide", crop=(45, 61), stride=(10, 10)), whole, atol=1e-6)


def test_slide_pads_a_small_image_and_the_padding_never_counts(model):
    x = torch.randn(1, 3, 45, 61)
    slid = infer(model, x, mode="slide", crop=(64, 64))
    padded = infer(model, F.pad(x, (0, 3, 0, 19)))[..., :45, :61]  # the network sees the padded image once
    assert slid.shape == (1, len(CLASSES), 45, 61)
    assert torch.allclose(slid, padded, atol=1e-6)
    assert torch.allclose(slid.sum(1), torch.ones(1, 45, 61), atol=1e-5)


@pytest.mark.parametrize("size", [(1, 1), (3, 40), (17, 17), (31, 33)])
def test_images_under_32_pixels_a_side_are_padded_for_the_network(model, size):
    """SegNet's five poolings cannot take them; the network sees them padded to 32 and the padding is cut."""
    x = torch.randn(2, 3, *size)
    probs = infer(model, x)
    h, w = size
    padded = infer(model, F.pad(x, (0, max(32 - w, 0), 0, max(32 - h, 0))))[..., :h, :w]
    assert probs.shape == (2, len(CLASSES), h, w)
    assert torch.allclose(probs, padded, atol=1e-6)
    flipped = infer(model, x, flip=True, scales=(0.5, 1.0))
    assert flipped.shape == probs.shape and torch.allclose(flipped.sum(1), torch.ones(2, h, w), atol=1e-5)


def test_overlapping_windows_average_exactly():
    # A per-pixel network has no context, so any window layout must give the whole-image result:
    # a wrong offset, count or crop would show.
    torch.manual_seed(0)
    pixelwise = torch.nn.Conv2d(3, 4, 1).eval()
    x = torch.randn(3, 3, 50, 77)
    whole = infer(pixelwise, x)
    for crop, stride in (((32, 32), (20, 9)), ((16, 40), (16, 40)), ((49, 76), (1, 1)), ((64, 32), None)):
        slid = infer(pixelwise, x, mode="slide", crop=crop, stride=stride, batch_size=4)
        assert torch.allclose(slid, whole, atol=1e-6), (crop, stride)


def test_batch_size_does_not_change_the_result(model):
    x = torch.randn(2, 3, 50, 70)
    options = {"mode": "slide", "crop": (40, 40), "stride": (25, 25), "scales": (0.75, 1.0), "flip": True}
    one = infer(model, x, batch_size=1, **options)
    many = infer(model, x, batch_size=7, **options)
    assert torch.allclose(one, many, atol=1e-5)
    assert torch.equal(one.argmax(1), many.argmax(1))
    assert torch.allclose(infer(model, x[1:], **options), many[1:], atol=1e-5)  # images are independent


def test_flip_tta_is_flip_equivariant(model):
    x = torch.randn(1, 3, 48, 64)
    plain = infer(model, x)
    symmetric = torch.cat([x[..., :32], x[..., :32].flip(-1)], -1)
    # The network alone is not flip-equivariant (else the checks below could not fail) ...
    assert (infer(model, symmetric) - infer(model, symmetric).flip(-1)).abs().max() > 0.05
    # ... flip TTA is: a mirrored input gives the mirrored output, a symmetric input a symmetric one.
    tta = infer(model, x, flip=True)
    assert torch.allclose(tta, (plain + infer(model, x.flip(-1)).flip(-1)) / 2, atol=1e-6)
    assert torch.allclose(infer(model, x.flip(-1), flip=True), tta.flip(-1), atol=1e-6)
    sym = infer(model, symmetric, flip=True)
    assert torch.allclose(sym, sym.flip(-1), atol=1e-6)


def test_multiscale_averages_resized_probabilities(model):
    x = torch.randn(1, 3, 40, 56)
    small = F.interpolate(x, size=(20, 28), mode="bilinear", align_corners=False)
    back = F.interpolate(infer(model, small), size=(40, 56), mode="bilinear", align_corners=False)
    expected = (back + infer(model, x)) / 2
    assert torch.allclose(infer(model, x, scales=(0.5, 1.0)), expected, atol=1e-6)


def test_bad_options_are_one_line_errors(model):
    x = torch.randn(1, 3, 40, 40)
    with pytest.raises(SceneparseError, match="crop"):
        infer(model, x, mode="slide")
    with pytest.raises(SceneparseError, match="gaps"):
        infer(model, x, mode="slide", crop=(32, 32), stride=(16, 40))
    with pytest.raises(SceneparseError, match="mode"):
        infer(model, x, mode="tiles")
    with pytest.raises(SceneparseError, match="shape"):
        infer(model, x[0])
    for scales in ((), (0.0,), (-1.0,), (float("nan"),), (float("inf"),), (1.0, 1000.0)):  # 1000: 72 GB
        with pytest.raises(SceneparseError, match="scales must be numbers above 0 and at most 4"):
            infer(model, x, scales=scales)


def test_segmenter_accepts_path_pil_and_array(checkpoint, model, tmp_path):
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (45, 67, 3), dtype=np.uint8)
    Image.fromarray(array).save(tmp_path / "photo.png")
    seg = Segmenter.from_checkpoint(checkpoint)
    assert seg.classes == CLASSES and seg.palette == [tuple(c) for c in PALETTE]
    from_path = seg.predict(tmp_path / "photo.png")
    from_str = seg.predict(str(tmp_path / "photo.png"))
    from_pil = seg.predict(Image.fromarray(array))
    from_array = seg.predict(array)
    assert from_path.shape == (45, 67) and from_path.dtype == np.int64
    assert np.array_equal(from_path, from_pil) and np.array_equal(from_path, from_array)
    assert np.array_equal(from_path, from_str)
    # the same as running the network on the normalised image by hand
    x = (torch.from_numpy(array).permute(2, 0, 1)[None].float() / 255 - seg.mean) / seg.std
    with torch.inference_mode():
        assert np.array_equal(from_array, model(x).argmax(1)[0].numpy())
    labels, probs = seg.predict(array, return_probs=True)
    assert probs.shape == (len(CLASSES), 45, 67) and probs.dtype == np.float32
    assert np.allclose(probs.sum(0), 1, atol=1e-5) and np.array_equal(probs.argmax(0), labels)


def test_segmenter_lists_and_batches(checkpoint):
    rng = np.random.default_rng(1)
    a, b = (rng.integers(0, 256, (40, 50, 3), dtype=np.uint8) for _ in range(2))
    c = rng.integers(0, 256, (33, 45, 3), dtype=np.uint8)
    seg = Segmenter.from_checkpoint(checkpoint, batch_size=2)
    singles = [seg.predict(im) for im in (a, b, c)]
    listed = seg.predict([a, b, c])
    assert all(np.array_equal(s, t) for s, t in zip(singles, listed))
    stacked = seg.predict(np.stack([a, b]))
    assert stacked.shape == (2, 40, 50) and np.array_equal(stacked[1], singles[1])


def test_segmenter_rejects_bad_images(checkpoint, tmp_path):
    seg = Segmenter.from_checkpoint(checkpoint)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(SceneparseError, match="broken.png"):
        seg.predict(tmp_path / "broken.png")
    with pytest.raises(SceneparseError, match="uint8"):
        seg.predict(np.zeros((40, 40, 3), dtype=np.float32))
    for empty in (np.zeros((0, 10, 3), np.uint8), np.zeros((10, 0), np.uint8), Image.new("RGB", (0, 0))):
        with pytest.raises(SceneparseError, match="image is empty"):
            seg.predict(empty)
    for shape in ((3, 40, 40), (40, 40, 2), (2, 40, 40, 5)):
        with pytest.raises(SceneparseError, match="must be HxW, HxWx1, HxWx3 or HxWx4"):
            seg.predict(np.zeros(shape, dtype=np.uint8))
    with pytest.raises(SceneparseError, match="engine"):
        Segmenter.from_checkpoint(checkpoint, engine="tensorrt")


def test_grey_and_rgba_arrays_read_as_the_rgb_they_show(checkpoint):
    seg = Segmenter.from_checkpoint(checkpoint)
    rng = np.random.default_rng(2)
    grey = rng.integers(0, 256, (40, 50), dtype=np.uint8)
    rgb = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    rgba = np.concatenate([rgb, rng.integers(0, 256, (40, 50, 1), dtype=np.uint8)], axis=2)
    as_rgb = seg.predict(np.repeat(grey[..., None], 3, axis=2))
    assert np.array_equal(seg.predict(grey), as_rgb) and np.array_equal(seg.predict(grey[..., None]), as_rgb)
    assert np.array_equal(seg.predict(rgba), seg.predict(rgb))


def test_resize_runs_the_network_at_that_size(model):
    x = torch.randn(1, 3, 64, 128)
    resized = F.interpolate(x, size=(48, 48), mode="bilinear", align_corners=False)
    expected = F.interpolate(infer(model, resized, flip=True), size=(64, 128), mode="bilinear", align_corners=False)
    got = infer(model, x, flip=True, resize=(48, 48))
    assert got.shape == (1, len(CLASSES), 64, 128)
    assert torch.allclose(got, expected, atol=1e-6)
    assert torch.equal(infer(model, x, resize=(64, 128)), infer(model, x))  # already that size: as is
    with pytest.raises(SceneparseError, match="resize"):
        infer(model, x, resize=(0, 48))


def test_a_model_trained_on_fixed_size_photos_resizes_by_default(model, tmp_path):
    """A pix2pix-pairs checkpoint stores its photo size: predict/evaluate resize to it unless told otherwise."""
    path = tmp_path / "pairs.pt"
    save_checkpoint(make_checkpoint("segnet_basic", len(CLASSES), {}, model.state_dict(), CLASSES, PALETTE,
                                    photo_size=(48, 48)), path)
    image = np.random.default_rng(0).integers(0, 255, (64, 128, 3), dtype=np.uint8)
    x = Segmenter.from_checkpoint(path).preprocess([image])
    resized = infer(model, x, resize=(48, 48)).argmax(1)[0].numpy()
    native = infer(model, x).argmax(1)[0].numpy()
    assert (resized != native).mean() > 0.05  # the two really differ, so the checks below mean something
    assert np.array_equal(Segmenter.from_checkpoint(path).predict(image), resized)
    assert np.array_equal(Segmenter.from_checkpoint(path, resize="native").predict(image), native)
    assert np.array_equal(Segmenter.from_checkpoint(path, resize=(64, 128)).predict(image), native)
