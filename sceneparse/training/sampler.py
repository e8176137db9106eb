"""The order in which training sees its images: a pure function of (seed, epoch), so that a
resumed run sees exactly the batches an uninterrupted one would."""
from __future__ import annotations

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler):
    """Shuffled indices of one epoch, paired with a per-sample augmentation seed.

    Like DistributedSampler, each process takes every world-th item of one shared permutation;
    unlike it, the permutation and the seeds depend only on (seed, epoch), and `start` skips the
    items already consumed, so a resumed run sees exactly the batches it would have seen.
    """

    def __init__(self, size: int, per_epoch: int, seed: int, rank: int = 0, world: int = 1):
        self.size, self.per_epoch, self.seed, self.rank, self.world = size, per_epoch, seed, rank, world
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.size, generator=g).tolist()
        mine = order[self.rank::self.world][: self.per_epoch]
        for index in mine[self.start:]:
            yield index, (self.seed * 1_000_003 + self.epoch) * 10_000_019 + index

    def __len__(self) -> int:
        return self.per_epoch - self.start
