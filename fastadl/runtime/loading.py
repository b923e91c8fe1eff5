"""Resumable, reproducible data loading for the search and training loops.

Every item's random transform is seeded from (seed, epoch, index), so a batch does not depend
on worker count, on how many batches came before, or on whether the run was resumed: resuming
at (epoch, position) replays exactly the batches a straight run would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data.distributed import DistributedSampler

from fastadl.data import build_dataset
from fastadl.data.transforms import PreResize, pad_collate
from fastadl.runtime.distributed import rank, world_size
from fastadl.runtime.preemption import detach_from_stop_signals, stop_signals_blocked


class SeededItems(Dataset):
    """Wraps a dataset so that item (epoch, i) is drawn under a RNG seeded by (seed, epoch, i)."""

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        with torch.random.fork_rng(devices=[]):
            # 1,000,003 and 7,919 are primes: distinct (epoch, index) pairs get distinct seeds.
            torch.manual_seed((self.seed * 1_000_003 + epoch) * 7_919 + index)
            return self.dataset[index]


class EpochBatches(Sampler):
    """Batches of (epoch, index) keys for one epoch, optionally skipping the first ``start``.

    The order is torch's DistributedSampler (seeded shuffle, this rank's share, drop_last) so
    several processes split every epoch without overlap.
    """

    def __init__(self, dataset_len: int, batch_size: int, seed: int, epoch: int, start: int = 0):
        self.sampler = DistributedSampler(
            range(dataset_len),
            num_replicas=world_size(),
            rank=rank(),
            shuffle=True,
            seed=seed,
            drop_last=True,
        )
        self.sampler.set_epoch(epoch)
        self.batch_size = batch_size
        self.epoch = epoch
        self.start = start

    def __len__(self) -> int:
        return len(self.sampler) // self.batch_size - self.start

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        indices = list(self.sampler)
        for b in range(self.start, len(indices) // self.batch_size):
            chunk = indices[b * self.batch_size : (b + 1) * self.batch_size]
            yield [(self.epoch, i) for i in chunk]


def batches_per_epoch(dataset_len: int, batch_size: int) -> int:
    """Full batches this rank sees per epoch (drop_last everywhere: BN needs full batches)."""
    return (dataset_len // world_size()) // batch_size


class DetachedLoader(DataLoader):
    """A DataLoader whose workers leave the process group (detach_from_stop_signals) without a
    window in which a group signal kills them: they are forked with the stop signals blocked."""

    def __iter__(self):
        with stop_signals_blocked():
            return super().__iter__()


def epoch_loader(
    items: SeededItems, batch_size: int, epoch: int, start: int, workers: int, pin: bool
) -> DataLoader:
    """Loader over one epoch of ``items`` from batch ``start`` on."""
    sampler = EpochBatches(len(items), batch_size, items.seed, epoch, start)
    return DetachedLoader(
        items,
        batch_sampler=sampler,
        num_workers=workers,
        pin_memory=pin,
        worker_init_fn=detach_from_stop_signals,
    )


def eval_loader(dataset: Dataset, batch_size: int, workers: int, limit: int = 0) -> DataLoader:
    """Deterministic loader over this rank's share of ``dataset`` (first ``limit`` items if > 0);
    images of different sizes are padded, masks with the ignore label."""
    n = len(dataset) if limit <= 0 else min(limit, len(dataset))
    indices = list(range(rank(), n, world_size()))
    subset = torch.utils.data.Subset(dataset, indices)
    return DetachedLoader(
        subset,
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=pad_collate,
        worker_init_fn=detach_from_stop_signals,
    )


def pre_resize(cfg) -> PreResize:
    """A loop config's fixed pre-resize (resize_factor, image_height, image_width)."""
    return PreResize(cfg.resize_factor, cfg.image_height, cfg.image_width)


def build_datasets(cfg, augment: bool = True):
    """(train, val) datasets for a search or train config (its data, data_root, crop_size,
    scale_min/max, pre-resize (validation too when val_resize), seed, and for synthetic data
    image_size and num_images when set). augment=False: the training images as validation
    sees images (whole, no randomness), e.g. to score a supernet on its own training split."""
    extra = {"image_size": cfg.image_size} if cfg.data == "synthetic" and cfg.image_size else {}
    n_train = {"num_images": cfg.num_images} if cfg.data == "synthetic" and cfg.num_images else {}
    train = build_dataset(
        cfg.data,
        cfg.data_root,
        "train",
        crop_size=cfg.crop_size if augment else None,
        train=augment,
        seed=cfg.seed,
        scale_range=(cfg.scale_min, cfg.scale_max),
        resize=pre_resize(cfg),
        **extra,
        **n_train,
    )
    val = build_dataset(
        cfg.data,
        cfg.data_root,
        "val",
        crop_size=None,
        train=False,
        seed=cfg.seed,
        resize=pre_resize(cfg) if cfg.val_resize else None,
        **extra,
    )
    return train, val
