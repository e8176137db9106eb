"""Every shipped config loads and survives a 2-iteration smoke run on the bundled samples."""
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from sceneparse.checkpoint import load_checkpoint
from sceneparse.training.config import load_config
from sceneparse.training import train

from conftest import ROOT, SAMPLES

CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def kitti_fixture(root: Path) -> Path:
    """Two tiny synthetic KITTI road frames (magenta road, red background) in the official layout."""
    for i in range(2):
        image = np.random.default_rng(i).integers(0, 255, (64, 96, 3), dtype=np.uint8)
        gt = np.zeros((64, 96, 3), np.uint8)
        gt[:] = (255, 0, 0)
        gt[32:] = (255, 0, 255)
        (root / "training" / "image_2").mkdir(parents=True, exist_ok=True)
        (root / "training" / "gt_image_2").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / "training" / "image_2" / f"um_00000{i}.png")
        Image.fromarray(gt).save(root / "training" / "gt_image_2" / f"um_road_00000{i}.png")
    return root


def cityscapes_fixture(root: Path) -> Path:
    """The bundled official frame twice (a second name), as a 2-image train split: PSPNet's BatchNorm
    after global pooling needs a batch of at least 2."""
    import shutil

    src = SAMPLES / "cityscapes"
    for stem in ("frankfurt_000000_000294", "frankfurt_000000_000295"):
        for kind, suffix in (("leftImg8bit", "leftImg8bit"), ("gtFine", "gtFine_labelIds")):
            dst = root / kind / "train" / "frankfurt" / f"{stem}_{suffix}.png"
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src / kind / "val" / "frankfurt" / f"frankfurt_000000_000294_{suffix}.png", dst)
    return root


def smoke_overrides(name: str, tmp_path: Path) -> list[str]:
    cfg = yaml.safe_load(Path(name).read_text())
    sets = ["iterations=2", "epochs=0", "crop_size=[64, 64]", "batch_size=2", "workers=0",
            "backbone_weights=", "eval_size=[64, 64]", "eval_mode=whole", "checkpoint_minutes=100",
            "compile=false"]  # compiling takes minutes; tests/test_cpu_nets.py checks the compiled step
    dataset = cfg["dataset"]
    if dataset == "camvid":
        sets += [f"root={SAMPLES / 'camvid'}", "train_split=train", "val_split=train"]
    elif dataset == "cityscapes_pairs":
        sets += [f"root={SAMPLES / 'cityscapes_pairs'}", "train_split=train", "val_split=val"]
    elif dataset == "cityscapes":
        sets += [f"root={cityscapes_fixture(tmp_path / 'cityscapes')}", "train_split=train", "val_split=train"]
    elif dataset == "kitti_road":
        sets += [f"root={kitti_fixture(tmp_path / 'kitti')}"]
    return sets


def test_every_config_is_covered():
    names = {p.stem for p in CONFIGS}
    assert {"camvid_dabnet_quick", "camvid_dabnet_full", "camvid_dabnet_long", "camvid_segnet_vgg16",
            "camvid_segnet_basic", "camvid_pspnet_resnet18", "cityscapes_pairs_dabnet", "cityscapes_pairs_dabnet_categories",
            "cityscapes_pairs_pspnet_lite", "cityscapes_pairs_pspnet_resnet18", "cityscapes_pairs_segnet_basic",
            "cityscapes_pairs_segnet_basic_categories",
            "cityscapes_pairs_psp_vgg19", "kitti_road_psp_vgg19", "cityscapes_pspnet_resnet50"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_smoke_run(path, tmp_path):
    cfg = load_config(path, smoke_overrides(str(path), tmp_path))
    result = train(cfg, tmp_path / "run")
    assert result["iteration"] == 2 and not result["interrupted"]
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["model"]["name"] == cfg.model and ckpt["train_state"]["iteration"] == 2
    # pix2pix pairs are 256x256 photos (squeezed frames): the model keeps that size for inference
    assert ckpt["dataset"].get("photo_size") == ([256, 256] if cfg.dataset == "cityscapes_pairs" else None)

