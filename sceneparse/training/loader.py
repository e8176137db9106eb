"""The training data: the train and val splits with their transforms, and the batches of one crop size."""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from sceneparse.data import SegmentationDataset, build_dataset
from sceneparse.data.transforms import eval_transform, train_transform
from sceneparse.training.config import TrainConfig
from sceneparse.training.sampler import EpochSampler
from sceneparse.training.state import ignore_stop_signals
from sceneparse.utils import IMAGENET_MEAN, IMAGENET_STD


def train_transform_for(cfg: TrainConfig, crop: tuple[int, int]):
    """The training augmentation of `cfg` at one crop size."""
    return train_transform(crop_size=crop, scale=tuple(cfg.scale), flip=cfg.flip, jitter=cfg.jitter,
                           mean=IMAGENET_MEAN, std=IMAGENET_STD)


def build_datasets(cfg: TrainConfig) -> tuple[SegmentationDataset, SegmentationDataset | None]:
    """The train split (with the training transform) and the val split (None when `val_split` is "")."""
    options = dict(cfg.dataset_options)
    if cfg.label_set:
        options["label_set"] = cfg.label_set
    val_tf = eval_transform(size=tuple(cfg.eval_size) if cfg.eval_size else None, mean=IMAGENET_MEAN,
                            std=IMAGENET_STD)
    train_ds = build_dataset(cfg.dataset, cfg.root, cfg.train_split, transform=train_transform_for(cfg, tuple(
        cfg.crop_size)), cache=cfg.cache, **options)
    val_ds = None
    if cfg.val_split:
        val_ds = build_dataset(cfg.dataset, cfg.root, cfg.val_split, transform=val_tf, cache=cfg.cache, **options)
    return train_ds, val_ds


def make_loader(cfg: TrainConfig, train_ds: SegmentationDataset, sampler: EpochSampler, crop: tuple[int, int],
                device: torch.device) -> DataLoader:
    """Batches of `crop`-sized samples; rebuilt (new workers) when crop_schedule moves on."""
    train_ds.transform = train_transform_for(cfg, crop)
    return DataLoader(train_ds, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.workers,
                      drop_last=True, pin_memory=device.type == "cuda", persistent_workers=cfg.workers > 0,
                      generator=torch.Generator().manual_seed(cfg.seed), worker_init_fn=ignore_stop_signals)
