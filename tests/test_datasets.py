"""Dataset readers on the bundled real samples, the shared data and small bad-input fixtures."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sceneparse.data import DATASETS, build_dataset
from sceneparse.data.cityscapes_pairs import COLORS, decode_colors
from sceneparse.data.kitti_road import decode_gt
from sceneparse.data.labels import (
    CAMVID_CLASSES, CAMVID_PALETTE, CITYSCAPES_CATEGORIES, CITYSCAPES_CATEGORY_PALETTE, CITYSCAPES_CLASSES,
    CITYSCAPES_LABELS, CITYSCAPES_PALETTE, CITYSCAPES_TRAINID_TO_CATEGORY,
)
from sceneparse.data.transforms import train_transform
from sceneparse.metrics import ConfusionMatrix, per_class_iou
from sceneparse.utils import IMAGENET_MEAN, IMAGENET_STD, SceneparseError

FRAME = "frankfurt_000000_000294"


def cityscapes_gt(samples: Path, kind: str) -> np.ndarray:
    return np.asarray(Image.open(samples / "cityscapes" / "gtFine" / "val" / "frankfurt" /
                                 f"{FRAME}_gtFine_{kind}.png"))


def check_sample(ds, i: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The contract every reader keeps, on sample i; returns the loaded pair."""
    image, mask = ds.load(i)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert mask.dtype == np.uint8 and mask.shape == image.shape[:2]
    assert set(np.unique(mask)) <= set(range(len(ds.classes))) | {255}
    assert len(ds.palette) == len(ds.classes) and all(len(c) == 3 for c in ds.palette)
    assert ds.ignore_index == 255 and ds.name in DATASETS
    x, y = ds[i]
    assert x.dtype == torch.float32 and x.shape == (3,) + mask.shape
    assert y.dtype == torch.int64 and torch.equal(y, torch.from_numpy(mask.astype(np.int64)))
    expected = (image / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    assert torch.allclose(x, torch.from_numpy(expected.transpose(2, 0, 1)).float(), atol=1e-5)
    return image, mask


# --- label tables ---------------------------------------------------------------------------

def test_cityscapes_label_table_equals_cityscapesscripts():
    from cityscapesscripts.helpers.labels import labels

    assert len(CITYSCAPES_LABELS) == len(labels)
    for ours, theirs in zip(CITYSCAPES_LABELS, labels):
        assert (ours.name, ours.id, ours.train_id, ours.category, ours.color) == \
               (theirs.name, theirs.id, theirs.trainId, theirs.category, theirs.color)
    train = sorted((lab for lab in labels if 0 <= lab.trainId < 255), key=lambda lab: lab.trainId)
    assert list(CITYSCAPES_CLASSES) == [lab.name for lab in train]
    assert list(CITYSCAPES_PALETTE) == [lab.color for lab in train]
    assert CITYSCAPES_TRAINID_TO_CATEGORY == [lab.categoryId - 1 for lab in train]
    assert [CITYSCAPES_CATEGORIES[k] for k in CITYSCAPES_TRAINID_TO_CATEGORY] == [lab.category for lab in train]
    assert len(CITYSCAPES_CATEGORY_PALETTE) == 7


def test_camvid_palette_matches_segnet_source():
    assert len(CAMVID_CLASSES) == len(CAMVID_PALETTE) == 11
    assert CAMVID_PALETTE[0] == (128, 128, 128) and CAMVID_PALETTE[3] == (128, 64, 128)  # sky, road
    assert CAMVID_PALETTE[10] == (0, 128, 192) and CAMVID_CLASSES[10] == "bicyclist"


# --- readers on bundled real samples ---------------------------------------------------------

def test_camvid_samples(samples):
    ds = build_dataset("camvid", samples / "camvid", "train")
    assert len(ds) == 3 and ds.classes == CAMVID_CLASSES and ds.label_set == "classes"
    for i in range(3):
        _, mask = check_sample(ds, i)
        raw = np.asarray(Image.open(ds.samples[i][1]))
        assert np.array_equal(mask, np.where(raw == 11, 255, raw))  # void -> ignore, the rest unchanged
    assert (mask == 255).any() and len(np.unique(mask)) > 5


def test_camvid_root_may_be_the_camvid_folder(samples):
    assert len(build_dataset("camvid", samples / "camvid" / "CamVid", "train")) == 3


def test_cityscapes_sample_matches_official_train_ids(samples):
    ds = build_dataset("cityscapes", samples / "cityscapes", "val")
    assert len(ds) == 1 and ds.classes == CITYSCAPES_CLASSES and ds.category_map == CITYSCAPES_TRAINID_TO_CATEGORY
    _, mask = check_sample(ds)
    from cityscapesscripts.helpers.labels import id2label

    ids = cityscapes_gt(samples, "labelIds")
    assert np.array_equal(mask, np.vectorize(lambda i: id2label[i].trainId)(ids).astype(np.uint8))
    # the shipped labelTrainIds file was downscaled on its own: it differs on 77 border pixels
    assert (mask == cityscapes_gt(samples, "labelTrainIds")).mean() > 0.99


def test_cityscapes_categories(samples):
    ds = build_dataset("cityscapes", samples / "cityscapes", "val", label_set="categories")
    assert ds.classes == CITYSCAPES_CATEGORIES and ds.palette == CITYSCAPES_CATEGORY_PALETTE
    _, mask = check_sample(ds)
    train_ids = build_dataset("cityscapes", samples / "cityscapes", "val").load(0)[1]
    expected = np.array(CITYSCAPES_TRAINID_TO_CATEGORY + [255] * (256 - 19), dtype=np.uint8)[train_ids]
    assert np.array_equal(mask, expected)
    assert {0, 1, 6} <= set(np.unique(mask))  # flat, construction, vehicle are in the frame


def test_cityscapes_pairs_samples(samples):
    ds = build_dataset("cityscapes_pairs", samples / "cityscapes_pairs", "train")
    assert len(ds) == 3 and ds.classes == CITYSCAPES_CLASSES
    for i in range(3):
        image, mask = check_sample(ds, i)
        assert image.shape == (256, 256, 3)
        assert (mask == 0).mean() > 0.2  # road covers much of every street frame
    cats = build_dataset("cityscapes_pairs", samples / "cityscapes_pairs", "val", label_set="categories")
    assert len(cats) == 1 and cats.classes == CITYSCAPES_CATEGORIES
    check_sample(cats)


def test_pix2pix_decode_agrees_with_official_labels(samples):
    """val/1.jpg is frankfurt_000000_000294: decode its colours, compare with the gtFine train ids."""
    ds = build_dataset("cityscapes_pairs", samples / "cityscapes_pairs", "val")
    assert ds.samples[0][0].name == "1.jpg"
    mask = ds.load(0)[1]
    truth = np.asarray(Image.fromarray(cityscapes_gt(samples, "labelTrainIds")).resize((256, 256), Image.NEAREST))
    both = (mask != 255) & (truth != 255)
    agreement = (mask[both] == truth[both]).mean()
    decoded, official = mask[both], truth[both]
    present = np.unique(official)
    cm = ConfusionMatrix(len(CITYSCAPES_CLASSES))
    cm.update(torch.from_numpy(decoded), torch.from_numpy(official))
    ious = per_class_iou(cm.matrix)[present]
    spurious = ~np.isin(decoded, present)
    print(f"pix2pix decode agreement with gtFine train ids: {agreement:.4f} on {both.mean():.1%} of pixels "
          f"(gtFine labels {(truth != 255).mean():.1%}); mean IoU over the {len(present)} classes in the frame "
          f"{np.mean(ious):.3f} ({', '.join(f'{CITYSCAPES_CLASSES[c]} {v:.3f}' for c, v in zip(present, ious))}); "
          f"{spurious.mean():.2%} decoded as classes not in the frame")
    assert both.mean() > 0.7
    assert agreement >= 0.90
    assert np.mean(ious) >= 0.8 and spurious.mean() < 0.02


def test_pix2pix_val1_is_the_bundled_frame(shared_data, samples):
    shipped = samples / "cityscapes_pairs" / "val" / "1.jpg"
    assert (shared_data / "cityscapes_pix2pix" / "cityscapes" / "val" / "1.jpg").read_bytes() == shipped.read_bytes()


def test_decode_colors_documented_cases():
    exact = {(128, 64, 128): 0, (153, 153, 153): 5, (0, 0, 142): 13, (0, 0, 0): 255, (250, 170, 160): 255,
             (111, 74, 0): 255, (119, 11, 32): 18}
    label = np.array([list(exact)], dtype=np.uint8)
    ids, far = decode_colors(label)
    assert ids[0].tolist() == list(exact.values()) and not far.any()
    near_road = np.array([[[128 + 20, 64 - 20, 128 + 10]]], dtype=np.uint8)  # distance 30
    assert decode_colors(near_road)[0][0, 0] == 0
    assert decode_colors(near_road, threshold=29.0)[0][0, 0] == 255
    assert decode_colors(near_road, threshold=29.0)[1][0, 0]
    assert len(COLORS) == len({tuple(c) for c in COLORS.tolist()})  # one row per distinct colour


def test_pairs_are_ordered_by_number(tmp_path, samples):
    split = tmp_path / "val"
    split.mkdir()
    for n in (10, 2, 1):
        shutil.copy(samples / "cityscapes_pairs" / "val" / "1.jpg", split / f"{n}.jpg")
    ds = build_dataset("cityscapes_pairs", tmp_path, "val")
    assert [p.name for p, _ in ds.samples] == ["1.jpg", "2.jpg", "10.jpg"]


# --- kitti_road (synthetic fixture; the real frames when shared data is present) ---------------

def write_kitti(root: Path, names: list[str], kind: str = "road") -> None:
    (root / "training" / "image_2").mkdir(parents=True)
    (root / "training" / "gt_image_2").mkdir(parents=True)
    for k, name in enumerate(names):
        category, number = name.split("_")
        Image.fromarray(np.full((6, 8, 3), 40 * k, dtype=np.uint8)).save(root / "training" / "image_2" / f"{name}.png")
        gt = np.zeros((6, 8, 3), dtype=np.uint8)
        gt[:2] = (255, 0, 0)
        gt[2:5] = (255, 0, 255)  # last row stays black: don't care
        Image.fromarray(gt).save(root / "training" / "gt_image_2" / f"{category}_{kind}_{number}.png")


def test_kitti_road_synthetic(tmp_path):
    write_kitti(tmp_path, [f"um_{n:06d}" for n in range(6)])
    train = build_dataset("kitti_road", tmp_path, "train")
    val = build_dataset("kitti_road", tmp_path, "val")
    assert train.classes == ("background", "road") and train.palette == ((255, 0, 0), (255, 0, 255))
    assert [p.name for p, _ in val.samples] == ["um_000000.png", "um_000005.png"]  # every fifth frame
    assert len(train) == 4 and len(build_dataset("kitti_road", tmp_path, "trainval")) == 6
    _, mask = check_sample(train)
    assert mask[:2].tolist() == [[0] * 8] * 2 and (mask[2:5] == 1).all() and (mask[5] == 255).all()


def test_kitti_lane_annotation_is_detected(tmp_path):
    write_kitti(tmp_path, ["um_000000", "um_000001"], kind="lane")
    ds = build_dataset("kitti_road", tmp_path, "train")
    assert ds.classes == ("background", "lane") and ds.samples[0][1].name == "um_lane_000001.png"


def test_decode_gt_colours():
    gt = np.array([[[255, 0, 255], [255, 0, 0], [0, 0, 0], [254, 0, 255]]], dtype=np.uint8)
    assert decode_gt(gt).tolist() == [[1, 0, 255, 255]]


def test_kitti_real_frames(shared_data):
    root = shared_data / "kitti_road_sample" / "data"
    ds = build_dataset("kitti_road", root, "trainval")
    assert len(ds) == 3 and ds.classes == ("background", "lane")
    image, mask = check_sample(ds)
    assert image.shape == (375, 1242, 3)
    assert 0.03 < (mask == 1).mean() < 0.2 and (mask == 0).mean() > 0.7


# --- folder -----------------------------------------------------------------------------------

CLASSES_YAML = "names: [road, car, sky]\ncolors: [[128, 64, 128], [0, 0, 142], [70, 130, 180]]\n"


def write_folder(root: Path, masks: dict[str, np.ndarray], classes_yaml: str = CLASSES_YAML,
                 split: str = "train") -> None:
    (root / split / "images").mkdir(parents=True)
    (root / split / "masks").mkdir(parents=True)
    (root / "classes.yaml").write_text(classes_yaml)
    for stem, mask in masks.items():
        Image.fromarray(np.zeros(mask.shape + (3,), dtype=np.uint8)).save(root / split / "images" / f"{stem}.jpg")
        Image.fromarray(mask).save(root / split / "masks" / f"{stem}.png")


def test_folder_dataset(tmp_path):
    mask = np.array([[0, 1, 2, 255]] * 3, dtype=np.uint8)
    write_folder(tmp_path, {"a": mask, "b": mask[:, ::-1].copy()})
    ds = build_dataset("folder", tmp_path, "train")
    assert ds.classes == ("road", "car", "sky") and ds.palette == ((128, 64, 128), (0, 0, 142), (70, 130, 180))
    assert [p.name for p, _ in ds.samples] == ["a.jpg", "b.jpg"]
    assert np.array_equal(check_sample(ds)[1], mask)


def test_folder_custom_ignore_and_palette_png(tmp_path):
    write_folder(tmp_path, {}, CLASSES_YAML + "ignore_index: 9\n")
    mask = Image.fromarray(np.array([[0, 1, 2, 9]], dtype=np.uint8), mode="P")
    mask.putpalette([0, 0, 0] * 256)
    mask.save(tmp_path / "train" / "masks" / "a.png")
    Image.new("RGB", (4, 1)).save(tmp_path / "train" / "images" / "a.png")
    assert build_dataset("folder", tmp_path, "train").load(0)[1].tolist() == [[0, 1, 2, 255]]


def test_folder_rejects_colour_masks(tmp_path):
    write_folder(tmp_path, {})
    Image.new("RGB", (4, 4)).save(tmp_path / "train" / "images" / "a.png")
    Image.new("RGB", (4, 4), (128, 64, 128)).save(tmp_path / "train" / "masks" / "a.png")
    with pytest.raises(SceneparseError, match=r"a\.png: expected a single-channel index mask"):
        build_dataset("folder", tmp_path, "train").load(0)


@pytest.mark.parametrize("text, message", [
    ("names: []\n", "non-empty list"),
    ("names: [a, b]\ncolors: [[1, 2, 3]]\n", "one \\[R, G, B\\]"),
    (CLASSES_YAML + "ignore_index: 1\n", "ignore_index must be"),
    ("names: [a\n", "not valid YAML"),
])
def test_folder_bad_classes_yaml(tmp_path, text, message):
    write_folder(tmp_path, {}, text)
    with pytest.raises(SceneparseError, match=message) as e:
        build_dataset("folder", tmp_path, "train")
    assert "classes.yaml" in str(e.value) and "\n" not in str(e.value)


# --- dataset behaviour: seeds, cache, options ----------------------------------------------------

def test_index_seed_makes_augmentation_a_pure_function(samples):
    ds = build_dataset("camvid", samples / "camvid", "train", transform=train_transform((96, 128), jitter=0.3))
    a, b, c = ds[(1, 7)], ds[(1, 7)], ds[(1, 8)]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    assert torch.equal(ds[1][0], ds[(1, 1)][0])  # the seed defaults to the index


def test_cache_keeps_decoded_pairs(samples):
    ds = build_dataset("camvid", samples / "camvid", "train", cache=True)
    first = ds.load(2)
    assert ds.load(2)[0] is first[0] and list(ds.cache) == [2]
    assert not first[0].flags.writeable and not first[1].flags.writeable
    assert torch.equal(ds[2][1], ds[2][1])


def test_trainval_is_train_plus_val(tmp_path, samples):
    base = tmp_path / "CamVid"
    shutil.copytree(samples / "camvid" / "CamVid", base)
    lines = (base / "train.txt").read_text().splitlines()
    (base / "train.txt").write_text("\n".join(lines[:2]) + "\n")
    (base / "val.txt").write_text(lines[2] + "\n")
    ds = build_dataset("camvid", tmp_path, "trainval")
    assert [p.name for p, _ in ds.samples] == [Path(line.split()[0]).name for line in lines]


# --- bad input: one-line errors naming the file ---------------------------------------------------

def camvid_copy(tmp_path: Path, samples: Path) -> Path:
    shutil.copytree(samples / "camvid" / "CamVid", tmp_path / "CamVid")
    return tmp_path / "CamVid"


def assert_one_line(error: pytest.ExceptionInfo, *parts: str) -> None:
    message = str(error.value)
    assert "\n" not in message
    for part in parts:
        assert part in message


def test_truncated_image(tmp_path, samples):
    base = camvid_copy(tmp_path, samples)
    image = base / "train" / "0006R0_f00930.png"
    image.write_bytes(image.read_bytes()[:5000])
    ds = build_dataset("camvid", tmp_path, "train")
    with pytest.raises(SceneparseError) as e:
        ds.load(1)
    assert_one_line(e, str(image), "corrupt")


def test_mask_size_differs_from_image(tmp_path, samples):
    base = camvid_copy(tmp_path, samples)
    label = base / "trainannot" / "0001TP_006690.png"
    Image.open(label).resize((240, 180), Image.NEAREST).save(label)
    with pytest.raises(SceneparseError) as e:
        build_dataset("camvid", tmp_path, "train").load(0)
    assert_one_line(e, str(label), "240x180", "480x360")


def test_label_value_out_of_range(tmp_path, samples):
    base = camvid_copy(tmp_path, samples)
    label = base / "trainannot" / "0016E5_00390.png"
    raw = np.array(Image.open(label))
    raw[10, 10] = 12
    Image.fromarray(raw).save(label)
    with pytest.raises(SceneparseError) as e:
        build_dataset("camvid", tmp_path, "train").load(2)
    assert_one_line(e, str(label), "label value 12")


def test_trainids_file_under_a_labelids_name_is_refused(tmp_path, samples):
    shutil.copytree(samples / "cityscapes", tmp_path / "cs")
    gt = tmp_path / "cs" / "gtFine" / "val" / "frankfurt"
    shutil.copy(gt / f"{FRAME}_gtFine_labelTrainIds.png", gt / f"{FRAME}_gtFine_labelIds.png")
    with pytest.raises(SceneparseError) as e:
        build_dataset("cityscapes", tmp_path / "cs", "val").load(0)
    assert_one_line(e, "labelIds.png", "label value 255")


def test_image_without_mask(tmp_path, samples):
    base = camvid_copy(tmp_path, samples)
    (base / "trainannot" / "0006R0_f00930.png").unlink()
    with pytest.raises(SceneparseError) as e:
        build_dataset("camvid", tmp_path, "train")
    assert_one_line(e, str(base / "train" / "0006R0_f00930.png"), "image without mask")
    assert len(build_dataset("camvid", tmp_path, "train", strict=False)) == 2

    shutil.copytree(samples / "cityscapes", tmp_path / "cs")
    (tmp_path / "cs" / "gtFine" / "val" / "frankfurt" / f"{FRAME}_gtFine_labelIds.png").unlink()
    with pytest.raises(SceneparseError) as e:
        build_dataset("cityscapes", tmp_path / "cs", "val")
    assert_one_line(e, f"{FRAME}_leftImg8bit.png", "image without mask")

    write_folder(tmp_path / "f", {"a": np.zeros((2, 2), np.uint8)})
    Image.new("RGB", (2, 2)).save(tmp_path / "f" / "train" / "images" / "b.png")
    with pytest.raises(SceneparseError) as e:
        build_dataset("folder", tmp_path / "f", "train")
    assert_one_line(e, "b.png", "image without mask")


def test_unknown_dataset_split_label_set_and_option(samples):
    with pytest.raises(SceneparseError) as e:
        build_dataset("camvd", samples / "camvid", "train")
    assert_one_line(e, "camvd", "camvid, cityscapes, cityscapes_pairs, kitti_road, folder")
    with pytest.raises(SceneparseError) as e:
        build_dataset("camvid", samples / "camvid", "validation")
    assert_one_line(e, "validation", "train, val, test, trainval")
    with pytest.raises(SceneparseError) as e:
        build_dataset("camvid", samples / "camvid", "train", label_set="categories")
    assert_one_line(e, "categories")
    with pytest.raises(SceneparseError) as e:
        build_dataset("camvid", samples / "camvid", "train", threshold=3)
    assert_one_line(e, "threshold", "cache")


def test_missing_root_and_empty_split(tmp_path):
    for name in DATASETS:
        with pytest.raises(SceneparseError) as e:
            build_dataset(name, tmp_path / "nowhere", "train")
        assert_one_line(e, str(tmp_path / "nowhere"), "not found")
    with pytest.raises(SceneparseError) as e:
        build_dataset("camvid", tmp_path, "val")
    assert_one_line(e, "no val images found", "val.txt")


# --- the full data sets ----------------------------------------------------------------------------

def test_shared_counts(shared_data):
    camvid = shared_data / "camvid_segnet"
    counts = {split: len(build_dataset("camvid", camvid, split)) for split in ("train", "val", "test", "trainval")}
    assert counts == {"train": 367, "val": 101, "test": 233, "trainval": 468}
    pairs = shared_data / "cityscapes_pix2pix" / "cityscapes"
    assert len(build_dataset("cityscapes_pairs", pairs, "val")) == 500
    assert len(build_dataset("cityscapes_pairs", pairs, "train")) == 1000
    check_sample(build_dataset("camvid", camvid, "test"), 232)
    check_sample(build_dataset("cityscapes_pairs", pairs, "val"), 499)
