"""Zarr writers side by side in one run, on the two write paths the workflow has: chunking
(uint8 slabs of 4096² slices, Blosc zstd 1, 512² chunks, optionally sharded one shard a slice)
and prediction (float16 probability in 768² chunks, Blosc lz4 1). The workflow's own writes
(`blocks.write_block`, the hand-written encoder, each chunk with its crc32c) against the same
without checksums (their cost), and the maintained alternatives: the zarrs codec pipeline for
zarr-python (Rust, parallel), zarr-python's own pipeline and tensorstore. Each contender writes
a new store every round from 2 threads, timed to the end of a sync; every store is compared
with ours voxel for voxel. (`python -m bench chunk` has the chunk command end to end.)"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bench.record import alternating_medians, record

THREADS = 2
CHUNK_SIDE, CHUNK_SLICES = 4096, 32  # 512 MiB of uint8
PREDICT_SIDE, PREDICT_SLICES = 2304, 24  # 3 x 3 chunks of 768 a slice, 243 MiB of float16


def chunk_slab(z: int) -> np.ndarray:
    from unetseg.data import demo_volume

    texture = chunk_slab.texture = getattr(chunk_slab, "texture", None)
    if texture is None:
        tile = demo_volume((1, 512, 512), seed=0)[0][0]
        chunk_slab.texture = texture = np.tile(tile, (CHUNK_SIDE // 512, CHUNK_SIDE // 512))
    return np.roll(texture, 13 * z, axis=1)[np.newaxis]


def probability_slab(z: int) -> np.ndarray:
    rng = np.random.default_rng(z)
    smooth = np.cumsum(rng.random((PREDICT_SIDE, PREDICT_SIDE), np.float32), axis=1)
    return (np.sin(smooth / 40) * 0.5 + 0.5).astype(np.float16)[np.newaxis]


def create(path: Path, case: dict, checksums: bool = True):
    from unetseg import io

    return io.create_ome_zarr(path, case["shape"], case["dtype"], case["chunks"],
                              compression=case["codec"], shards=case.get("shards"),
                              checksums=checksums)  # fmt: skip


@contextlib.contextmanager
def pipeline(name: str):
    import zarr

    from unetseg import io

    path = (
        "zarrs.ZarrsCodecPipeline"
        if name == "zarrs"
        else "zarr.core.codec_pipeline.BatchedCodecPipeline"
    )
    with io.bulk_writes(), zarr.config.set({"codec_pipeline.path": path}):
        yield


def writers() -> dict:
    """name -> write(store path, case): each writes slabs [z, z + 1) from THREADS threads."""
    from unetseg import blocks, io

    def with_blocks(checksums):
        def write(path, case):
            with pipeline("zarr"):
                target = create(path, case, checksums)
                run(lambda z: blocks.write_block(target, (z, 0, 0), case["slab"](z)), case)

        return write

    def with_zarr_pipeline(name):
        def write(path, case):
            with pipeline(name):
                target = create(path, case)
                run(lambda z: target.__setitem__(slice(z, z + 1), case["slab"](z)), case)

        return write

    def with_tensorstore(path, case):
        import tensorstore as ts

        with pipeline("zarr"):
            create(path, case)  # the same metadata, written by zarr-python
        context = ts.Context({"data_copy_concurrency": {"limit": THREADS},
                              "file_io_concurrency": {"limit": THREADS}})  # fmt: skip
        array = ts.open({"driver": "zarr3", "kvstore": {"driver": "file",
                         "path": str(path / io.ARRAY_NAME)}}, context=context).result()  # fmt: skip
        run(lambda z: array[z : z + 1].write(case["slab"](z)).result(), case)

    return {"ours": with_blocks(True), "no_checksums": with_blocks(False),
            "zarrs": with_zarr_pipeline("zarrs"), "zarr": with_zarr_pipeline("zarr"),
            "tensorstore": with_tensorstore}  # fmt: skip


def run(write_slice, case) -> None:
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(write_slice, range(case["shape"][0])))


def cases(size: float = 1.0) -> dict:
    chunk_slices = max(2, int(CHUNK_SLICES * size))
    predict_slices = max(2, int(PREDICT_SLICES * size))
    zstd = {"cname": "zstd", "clevel": 1}
    from unetseg.stores import PROBABILITY_CODEC

    chunk = {"shape": (chunk_slices, CHUNK_SIDE, CHUNK_SIDE), "dtype": np.uint8,
             "chunks": (1, 512, 512), "codec": zstd, "slab": chunk_slab}  # fmt: skip
    return {
        "chunk": chunk,
        "chunk_sharded": {**chunk, "shards": (1, CHUNK_SIDE, CHUNK_SIDE)},
        "predict": {"shape": (predict_slices, PREDICT_SIDE, PREDICT_SIDE), "dtype": np.float16,
                    "chunks": (1, 768, 768), "codec": PROBABILITY_CODEC, "slab": probability_slab},
    }  # fmt: skip


def timed(write, path: Path, case: dict) -> float:
    started = time.perf_counter()
    write(path, case)
    subprocess.run(["sync"], check=True)
    return time.perf_counter() - started


def same_voxels(reference: Path, other: Path) -> bool:
    from unetseg import io

    ours, theirs = io.open_zarr(reference), io.open_zarr(other)
    return all(np.array_equal(ours[z], theirs[z]) for z in range(ours.shape[0]))


def compare_writers(rounds: int = 3, size: float = 1.0) -> dict:
    """Each case's MiB/s per writer; records `<case>_write_checksums_cost` (time with crc32c over
    without) and `<case>_write_<writer>_vs_ours` (its speed over the workflow's; > 1: faster)."""
    contenders = writers()
    chunk_slab(0)  # the texture made before any contender is timed
    figures = {}
    with tempfile.TemporaryDirectory(dir=Path.home()) as folder:
        folder = Path(folder)
        for name, case in cases(size).items():
            medians = alternating_medians(
                {writer: lambda r, w=write, n=f"{name}-{writer}", c=case: timed(w, folder / f"{n}-{r}.zarr", c)
                 for writer, write in contenders.items()},
                rounds,
            )  # fmt: skip
            equal = {writer: same_voxels(folder / f"{name}-ours-0.zarr", folder / f"{name}-{writer}-0.zarr")
                     for writer in contenders}  # fmt: skip
            mib = np.prod(case["shape"]) * np.dtype(case["dtype"]).itemsize / 2**20
            figures[name] = {w: round(mib / s, 1) for w, s in medians.items()}
            common = {"mib_s": figures[name], "rounds": rounds, "threads": THREADS,
                      "case": {k: str(v) for k, v in case.items() if k != "slab"}}  # fmt: skip
            record(f"{name}_write_checksums_cost", round(medians["ours"] / medians["no_checksums"], 3),
                   "x the time without crc32c", "report", same_voxels=equal["no_checksums"],
                   **common)  # fmt: skip
            for writer in ("zarrs", "zarr", "tensorstore"):
                record(f"{name}_write_{writer}_vs_ours", round(medians["ours"] / medians[writer], 3),
                       "x blocks.write_block's speed (both with crc32c)", "report (adopt at >= 0.9)",
                       same_voxels=equal[writer], **common)  # fmt: skip
            print(name, figures[name], equal, flush=True)
    return figures


BENCHMARKS = {"writers": compare_writers}
