"""What training reads: its volumes a window at a time (grey values normalised, the labels'
interior mask, the loss weights), and the augmented samples made from them in DataLoader
processes.

Samples are drawn by index with their own seeded generator, so a run is reproducible whatever
the number of DataLoader workers, and a resumed run continues the exact same sample stream.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from unetseg import augment_device, blocks, intensity, io, labels
from unetseg.augment import annotated_cells, annotated_point, augmented_sample, draw
from unetseg.errors import UnetsegError

if TYPE_CHECKING:
    from unetseg.train import TrainConfig

log = logging.getLogger(__name__)


# Decoded chunks of the training stores kept by the processes that make samples, shared out among
# them: a data set up to this size is decoded once; a larger one window by window as needed.
CHUNK_CACHE_BYTES = 1 << 30


class Plane:
    """Slice z of a (z, y, x) array (a Zarr store or numpy) as a 2D array that reads only the
    windows asked for, through `convert` (normalisation, the interior mask)."""

    def __init__(self, array, z: int, convert=None, cache: blocks.DecodedChunks | None = None):
        self.array, self.z, self.convert, self.cache = array, z, convert, cache
        self.shape = tuple(array.shape[1:])

    def __getitem__(self, window: tuple[slice, slice]) -> np.ndarray:
        ys, xs = (
            slice(start, max(start, stop))
            for start, stop, _ in (s.indices(n) for s, n in zip(window, self.shape, strict=True))
        )
        block = blocks.read_window(self.array, self.z, ys, xs, self.cache)
        return block if self.convert is None else self.convert(block)

    def whole(self) -> np.ndarray:
        return self[:, :]


class CacheSection:
    """One array's share of a DecodedChunks that several arrays use, so that one budget serves
    all of a run's volumes."""

    def __init__(self, shared: blocks.DecodedChunks, key: str):
        self.shared, self.key = shared, key

    def get(self, index: tuple[int, ...], decode):
        return self.shared.get((self.key, *index), lambda _: decode(index))


SHARED_CHUNKS = blocks.DecodedChunks(CHUNK_CACHE_BYTES)  # a pickled copy starts empty


@dataclass
class Volume:
    """A training or validation volume as the network sees it, read from its stores a window at
    a time: grey values normalised by `grey_mappings` (one per slice; none: as they are), the
    interior mask of the labels, and the loss weights (train volumes)."""

    raw: object  # (z, y, x) Zarr arrays, or numpy
    labels: object
    weights: object | None = None
    grey_mappings: list[intensity.Mapping] | None = None
    kind: str = labels.BINARY
    ignore: int | None = None
    name: str = "volume"  # for the log: its labels store

    @classmethod
    def from_arrays(cls, image, interior, weights=None) -> Volume:
        """A volume held in memory: normalised grey values, interior mask, weights."""
        return cls(np.asarray(image, np.float32), np.asarray(interior, np.uint8), weights)

    @property
    def depth(self) -> int:
        return self.raw.shape[0]

    def cache(self, array, cached: bool = True) -> CacheSection | None:
        """Samples keep decoded chunks, under the name of the store they come from (volumes may
        share a raw store); what is read whole now and then (validation slices, the annotation
        scan) is not kept."""
        return CacheSection(SHARED_CHUNKS, store_key(array)) if cached else None

    def image(self, z: int, cached: bool = True) -> Plane:
        mapping = self.grey_mappings[z] if self.grey_mappings else (0.0, 1.0)
        normalise = functools.partial(intensity.normalized, mapping=mapping)
        return Plane(self.raw, z, normalise, self.cache(self.raw, cached))

    def interior(self, z: int, cached: bool = True) -> Plane:
        mask = functools.partial(interior_mask, kind=self.kind, ignore=self.ignore)
        return Plane(self.labels, z, mask, self.cache(self.labels, cached))

    def weight(self, z: int, cached: bool = True) -> Plane:
        return Plane(self.weights, z, None, self.cache(self.weights, cached))


def store_key(array) -> str:
    """What names an array's chunks in the shared cache: its store and path (numpy arrays are
    sliced, never cached)."""
    store_path = getattr(array, "store_path", None)
    return str(store_path) if store_path is not None else f"array {id(array)}"


def interior_mask(block: np.ndarray, kind: str, ignore: int | None) -> np.ndarray:
    return labels.interior(block, kind, ignore).astype(np.uint8)


def load_volume(
    raw_path, labels_path, weights_path=None, config: TrainConfig | None = None
) -> Volume:
    """A volume's stores, read as the network sees them: grey values normalised as `config`
    says (from the raw store's percentiles, or its type)."""
    if config is None:
        from unetseg.train import TrainConfig  # train imports this module

        config = TrainConfig()
    raw = io.open_zarr(raw_path)
    kind, ignore = labels.store_conventions(labels_path)
    grey_mappings = intensity.slice_mappings(raw, config.normalize, config.normalize_percentiles)
    log.info("%s: grey values %s", raw_path, intensity.describe(grey_mappings, config.normalize))
    return Volume(
        raw,
        io.open_zarr(labels_path),
        io.open_zarr(weights_path) if weights_path else None,
        grey_mappings,
        kind,
        ignore,
        name=str(labels_path),
    )


class Samples(torch.utils.data.Dataset):
    """Augmented (image, labels, weights) tiles; sample `i` depends only on (seed, i).

    Slices without annotated pixels are skipped, and tiles of sparsely annotated slices are
    centred on annotated pixels; fully annotated slices are sampled uniformly, as the paper did.
    A tile reads only the window of its slice that it reaches.
    """

    def __init__(
        self,
        volumes: list[Volume],
        tile_in: int,
        tile_out: int,
        config: TrainConfig,
        windows_only: bool = False,
    ):
        self.slices, self.windows_only = [], windows_only
        for volume in volumes:
            annotated = 0
            for z in range(volume.depth):
                cells = annotated_cells(volume.weight(z, cached=False))
                if cells is None or len(cells):
                    self.slices.append((volume, z, cells))
                    annotated += 1
            if annotated < volume.depth:
                log.info("%s: %d of %d slices hold annotated pixels; only these are sampled",
                         volume.name, annotated, volume.depth)  # fmt: skip
        if not self.slices:
            raise UnetsegError("train: no pixel of the train volumes is annotated")
        self.tile_in, self.tile_out, self.config = tile_in, tile_out, config

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, index: int):
        rng = np.random.default_rng([self.config.seed, index])
        volume, z, cells = self.slices[rng.integers(len(self.slices))]
        center = None if cells is None else annotated_point(rng, volume.weight(z), cells)
        if self.windows_only:  # the device augments: the same draws, the window they reach
            choice = draw(rng, volume.raw.shape[1:], self.config.augment, center)
            planes = (volume.image(z), volume.interior(z), volume.weight(z))
            return augment_device.read_window(choice, self.tile_in, *planes)
        image, target, weight = augmented_sample(
            rng,
            volume.image(z),
            volume.interior(z),
            volume.weight(z),
            self.tile_in,
            self.tile_out,
            self.config.augment,
            center,
        )
        return torch.from_numpy(image[None]), torch.from_numpy(target), torch.from_numpy(weight)


class StepSampler(torch.utils.data.Sampler):
    """Sample indices from `start` on, so that a resumed run continues the same stream."""

    def __init__(self, start: int):
        self.start = start

    def __iter__(self):
        index = self.start
        while True:
            yield index
            index += 1


def sample_loader(
    volumes: list[Volume],
    tile_in: int,
    config: TrainConfig,
    device,
    step: int,
    windows_only: bool = False,
):
    """Augmented batches made in `config.workers` processes, from sample `step` on; or, for
    augmentation on the device, lists of the windows and draws they come from."""
    return torch.utils.data.DataLoader(
        Samples(volumes, tile_in, config.tile_out, config, windows_only),
        batch_size=config.batch_size,
        sampler=StepSampler(step * config.batch_size),
        num_workers=config.workers,
        collate_fn=list if windows_only else None,
        # pinned pages let the copies below run asynchronously
        pin_memory=device.type == "cuda" and not windows_only,
        persistent_workers=config.workers > 0,
        worker_init_fn=functools.partial(limit_chunk_cache, CHUNK_CACHE_BYTES // config.workers)
        if config.workers
        else None,
    )


def augments_on_device(setting: str, device: torch.device) -> bool:
    """train.augment_device: cpu (the loader processes), cuda (the training GPU), or auto
    (the GPU where training runs on one)."""
    if setting == "cpu" or (setting == "auto" and device.type != "cuda"):
        return False
    if setting in ("cuda", "auto") and device.type == "cuda":
        return True
    raise UnetsegError(
        f"train.augment_device: '{setting}' needs training on a CUDA device; it runs on {device}"
        if setting == "cuda"
        else f"train.augment_device: '{setting}' is not cpu, cuda or auto"
    )


def loader_workers(setting: int | str, threads: int) -> int:
    """train.workers: a number, or 'auto': the job's threads but the one that runs the steps."""
    if setting == "auto":
        return max(threads - 1, 0)
    if isinstance(setting, int) and setting >= 0:
        return setting
    raise UnetsegError(f"train.workers: '{setting}' is not a number of processes or 'auto'")


def limit_chunk_cache(max_bytes: int, worker: int) -> None:
    """A sampling process's share of the chunk cache, so that the run's total stays within it."""
    SHARED_CHUNKS.max_bytes = max_bytes
