"""Chunking big BigTIFFs: peak memory at two volume sizes, and throughput beside `cp`; large 2D
planes chunked in bands and exported as tiles, against whole slices."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

from bench.record import alternating_medians, commit, peak_rss_mb, record, seconds

SIDE = 4096  # px; a 4096 x 4096 uint8 page is 16 MiB


def write_bigtiff(path: Path, n_slices: int) -> None:
    """An uncompressed uint8 BigTIFF written page by page (never whole in memory)."""
    from unetseg.data import demo_volume

    texture = np.tile(demo_volume((1, 512, 512), seed=0)[0][0], (SIDE // 512, SIDE // 512))
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        for z in range(n_slices):
            tif.write(np.roll(texture, 13 * z, axis=1), photometric="minisblack", contiguous=True)


def into_page_cache(path: Path) -> None:
    """Equalise the page cache: both contenders start with the file read once into memory."""
    with path.open("rb") as file:
        while file.read(1 << 24):
            pass


def chunk_command(tiff: Path, out: Path, *options: str) -> list[str]:
    return [sys.executable, "-m", "unetseg", "chunk", str(tiff), str(out), "--threads", "2",
            *options]  # fmt: skip


def to_disk(tiff: Path, command: list) -> tuple[float, float]:
    """Wall time of `command` until its bytes are on disk, with `tiff` read once into memory
    before, and the command's peak RSS (MB)."""
    into_page_cache(tiff)
    started = time.perf_counter()
    peak = peak_rss_mb([str(part) for part in command])
    subprocess.run(["sync"], check=True)
    return time.perf_counter() - started, peak


def chunk_benchmarks(sizes_gib=(1, 4), rounds: int = 3) -> None:
    """chunk_peak_rss_mb_4gb (and the 1 GiB size beside it), and on the largest size chunk_vs_cp
    with the default chunks and chunk_vs_cp_sharded with one shard per slice: medians of
    `rounds` alternating rounds of cp, chunk and sharded chunk.

    Every output stays until the end: ext4 skips the inodes of files deleted in the last minutes
    when it creates new ones (`recently_deleted`, seen with perf), which made a store written
    right after another was deleted up to twice as slow."""
    with tempfile.TemporaryDirectory(dir=Path.home()) as folder:
        folder = Path(folder)
        for size_gib in sizes_gib:
            tiff, store = folder / f"volume-{size_gib}g.tif", folder / f"v{size_gib}.zarr"
            write_bigtiff(tiff, n_slices=size_gib * 64)
            chunk_s, peak = to_disk(tiff, chunk_command(tiff, store))
            gib = tiff.stat().st_size / 2**30
            common = {"volume": f"{size_gib * 64}x{SIDE}x{SIDE} uint8 BigTIFF", "file_gib": round(gib, 2),
                      "chunks": "1x512x512", "codec": "blosc zstd 1 byte shuffle", "threads": 2,
                      "page_cache": "equalised: the file is read once before each contender"}  # fmt: skip
            name = "chunk_peak_rss_mb_4gb" if size_gib == 4 else f"chunk_peak_rss_mb_{size_gib}gb"
            record(name, round(peak), "MB", "<= 500, flat in volume size", seconds=round(chunk_s, 1),
                   **common)  # fmt: skip
            if size_gib == max(sizes_gib):
                against_cp(tiff, store, folder, common, rounds)
                direct_vs_zarr(tiff, folder, common)


def against_cp(tiff: Path, store: Path, folder: Path, common: dict, rounds: int) -> None:
    """chunk_vs_cp and chunk_vs_cp_sharded, each contender writing a new output every round."""
    gib = tiff.stat().st_size / 2**30
    store_gib = sum(f.stat().st_size for f in store.rglob("*") if f.is_file()) / 2**30
    shard = f"1,{SIDE},{SIDE}"
    commands = {
        "cp": lambda r: ["cp", tiff, folder / f"copy-{r}.tif"],
        "chunk": lambda r: chunk_command(tiff, folder / f"chunk-{r}.zarr"),
        "sharded": lambda r: chunk_command(tiff, folder / f"sharded-{r}.zarr", "--shards", shard),
    }
    medians = alternating_medians(
        {name: lambda r, c=command: to_disk(tiff, c(r))[0] for name, command in commands.items()},
        rounds,
    )
    cp_s, chunk_s, sharded_s = medians["cp"], medians["chunk"], medians["sharded"]
    note = "both timed to the end of a sync; unetseg chunk includes Python start-up and checks"
    record("chunk_vs_cp", round(cp_s / chunk_s, 3), "x cp throughput", ">= 0.5",
           chunk_gib_s=round(gib / chunk_s, 3), cp_gib_s=round(gib / cp_s, 3), rounds=rounds,
           store_gib=round(store_gib, 2), **common, note=note)  # fmt: skip
    record("chunk_vs_cp_sharded", round(cp_s / sharded_s, 3), "x cp throughput", ">= 0.5",
           chunk_gib_s=round(gib / sharded_s, 3), cp_gib_s=round(gib / cp_s, 3), rounds=rounds,
           **{**common, "shards": shard.replace(",", "x")}, note=note)  # fmt: skip


def direct_vs_zarr(tiff: Path, folder: Path, common: dict, rounds: int = 2) -> None:
    """chunk_direct_vs_zarr: the same slabs written with `blocks.write_block` and with zarr's own
    `array[...] = block`, in this process, alternating, each into a new store."""
    import dask

    from unetseg import blocks, io
    from unetseg.chunk import ALL_ROWS, TiffPages

    def by_blocks(target, z, slab):
        blocks.write_block(target, (z, 0, 0), slab)

    def by_zarr(target, z, slab):
        target[z : z + len(slab)] = slab

    def copy_seconds(write, out: Path) -> float:
        into_page_cache(tiff)
        started = time.perf_counter()
        with io.bulk_writes(), TiffPages.of(tiff, depth, 0) as pages:
            target = io.create_ome_zarr(out, (depth, SIDE, SIDE), np.uint8, (1, 512, 512))
            tasks = [
                dask.delayed(write)(target, z, pages.read(z, z + 1, ALL_ROWS)) for z in range(depth)
            ]
            dask.compute(*tasks, scheduler="threads", num_workers=2)
        subprocess.run(["sync"], check=True)
        return time.perf_counter() - started

    depth = 64  # the first GiB of the volume
    medians = alternating_medians(
        {"blocks": lambda r: copy_seconds(by_blocks, folder / f"blocks-{r}.zarr"),
         "zarr": lambda r: copy_seconds(by_zarr, folder / f"zarr-{r}.zarr")},
        rounds,
    )  # fmt: skip
    gib = depth * SIDE * SIDE / 2**30
    ours, theirs = medians["blocks"], medians["zarr"]
    record("chunk_direct_vs_zarr", round(theirs / ours, 3), "x zarr's write", "> 1",
           blocks_gib_s=round(gib / ours, 3), zarr_gib_s=round(gib / theirs, 3), rounds=rounds,
           **{**common, "volume": f"{depth}x{SIDE}x{SIDE} uint8, first GiB of the BigTIFF"},
           note="in-process, 2 Dask threads, each timed to the end of a sync")  # fmt: skip


def codec_speeds(settings=(("zstd", 1), ("zstd", 3), ("lz4", 5))) -> None:
    """codec_<cname><clevel>_mib_s: Blosc (byte shuffle) encoding speed on one thread, as each
    chunk-writing thread runs it, and the compression ratio, on the 20 ISBI training slices (512²
    chunks; skipped without them) and on this benchmark's texture."""
    import numcodecs
    import numcodecs.blosc

    from bench.train import ISBI
    from unetseg.data import demo_volume

    numcodecs.blosc.use_threads = False  # one thread per chunk, as in a Dask worker
    texture = np.tile(demo_volume((1, 512, 512), seed=0)[0][0], (2, 2))
    samples = {"texture": [np.roll(texture, 13 * z, axis=1)[:512, :512] for z in range(8)]}
    if (ISBI / "train-volume.tif").exists():
        slices = tifffile.imread(ISBI / "train-volume.tif")
        samples["isbi"] = [image[:512, :512] for image in slices]
    for data, chunks in samples.items():
        chunks = [np.ascontiguousarray(chunk) for chunk in chunks]
        raw_bytes = sum(chunk.nbytes for chunk in chunks)
        for cname, clevel in settings:
            codec = numcodecs.Blosc(cname, clevel, numcodecs.Blosc.SHUFFLE)
            encoded = [codec.encode(chunk) for chunk in chunks]  # warm-up, and the sizes
            taken = min(seconds(lambda c=codec, cs=chunks: [c.encode(chunk) for chunk in cs])
                        for _ in range(5))  # fmt: skip
            record(f"codec_{cname}{clevel}_mib_s_{data}", round(raw_bytes / taken / 2**20),
                   "MiB/s, one thread", "report (chooses chunk.clevel)",
                   ratio=round(raw_bytes / sum(map(len, encoded)), 3), chunks=len(chunks),
                   shuffle="byte")  # fmt: skip


def write_plane(path: Path, side: int, layout: str) -> None:
    """A uint8 plane of EM-like texture, written a band at a time: one uncompressed strip (as
    ImageJ writes) or 512-px zlib tiles (as slide scanners and Bio-Formats write)."""
    from unetseg.data import demo_volume

    texture = np.tile(demo_volume((1, 512, 512), seed=0)[0][0], (1, side // 512))

    def band(y: int) -> np.ndarray:
        return np.roll(texture, 13 * (y // 512), axis=1)

    if layout == "strip":
        plane = tifffile.memmap(path, shape=(side, side), dtype=np.uint8, bigtiff=True,
                                photometric="minisblack")  # fmt: skip
        for y in range(0, side, 512):
            plane[y : y + 512] = band(y)
        plane.flush()
        del plane
        return
    tiles = (band(y)[:, x : x + 512] for y in range(0, side, 512) for x in range(0, side, 512))
    tifffile.imwrite(path, tiles, shape=(side, side), dtype=np.uint8, tile=(512, 512),
                     compression="zlib", compressionargs={"level": 1}, bigtiff=True,
                     photometric="minisblack")  # fmt: skip


def with_bound(module: str, name: str, call: str) -> list[str]:
    """A fresh Python running unetseg.`module`.`call` with its `name` bound lifted: whole slices
    at once, as before bands."""
    code = f"from unetseg import {module}; {module}.{name} = 2**62; {module}.{call}"
    return [sys.executable, "-c", code]


def plane_benchmarks(sizes_gib=(1, 4), layouts=("strip", "tiles"), rounds: int = 2) -> None:
    """chunk_plane_peak_rss_mb_<size>gib_<layout>: `unetseg chunk` on one uint8 plane of 1 and
    4 GiB, in bands of chunk rows (the worst peak of `rounds` runs: the threads' timing moves
    it), against whole slices (chunk.BAND_BYTES lifted), each in a fresh process, the file read
    once before each."""
    with tempfile.TemporaryDirectory(dir=Path.home()) as folder:
        folder = Path(folder)
        for size_gib in sizes_gib:
            side = int((size_gib * 2**30) ** 0.5)
            for layout in layouts:
                tiff = folder / f"plane-{size_gib}g-{layout}.tif"
                write_plane(tiff, side, layout)
                runs = [to_disk(tiff, chunk_command(tiff, folder / f"b{r}-{tiff.stem}.zarr"))
                        for r in range(rounds)]  # fmt: skip
                ours_s, ours = max(runs, key=lambda run: run[1])  # the worst peak
                whole_call = f"chunk_volume('{tiff}', '{folder}/w-{tiff.stem}.zarr')"
                whole_s, whole = to_disk(tiff, with_bound("chunk", "BAND_BYTES", whole_call))
                record(f"chunk_plane_peak_rss_mb_{size_gib}gib_{layout}", round(ours), "MB",
                       "flat in plane size", whole_slice_mb=round(whole), seconds=round(ours_s, 1),
                       whole_slice_seconds=round(whole_s, 1), runs_mb=[round(r[1]) for r in runs],
                       plane=f"1x{side}x{side} uint8",
                       layout={"strip": "one uncompressed strip", "tiles": "512-px zlib tiles"}[layout],
                       chunks="1x512x512", threads=2)  # fmt: skip
                tiff.unlink()


def export_planes(sizes_gib=(1, 4)) -> None:
    """export_plane_peak_rss_mb_<size>gib: `unetseg export` of a uint32 segmentation of one
    slice of 1 and 4 GiB, as tiles, against whole slices (export.TILED_SLICE_BYTES lifted)."""
    with tempfile.TemporaryDirectory(dir=Path.home()) as folder:
        for size_gib in sizes_gib:
            export_plane(Path(folder), size_gib)


def export_plane(folder: Path, size_gib: float) -> None:
    from unetseg import io

    side = int((size_gib * 2**30 / 4) ** 0.5)
    store = folder / f"segmentation-{size_gib}g.zarr"
    target = io.create_ome_zarr(store, (1, side, side), np.uint32, (1, 512, 512))
    ids = np.arange(side // 16, dtype=np.uint32).repeat(16)  # 16-px cells along x
    for y in range(0, side, 512):
        target[0, y : y + 512] = np.broadcast_to(ids + np.uint32(y // 16 * side), (512, side))
    command = [sys.executable, "-m", "unetseg", "export", str(store), str(folder / "b.tif")]
    ours_s, ours = to_disk(store / "zarr.json", command)
    whole_call = f"export_tiff('{store}', '{folder}/w.tif')"
    whole_s, whole = to_disk(
        store / "zarr.json", with_bound("export", "TILED_SLICE_BYTES", whole_call)
    )
    record(f"export_plane_peak_rss_mb_{size_gib}gib", round(ours), "MB", "flat in plane size",
           whole_slice_mb=round(whole), seconds=round(ours_s, 1),
           whole_slice_seconds=round(whole_s, 1), plane=f"1x{side}x{side} uint32", tiles="512 px")  # fmt: skip
    for path in (store, folder / "b.tif", folder / "w.tif"):
        io.remove_path(path)


def against_baseline(size_gib: int = 4, rounds: int = 3) -> None:
    """chunk_vs_baseline: `unetseg chunk` of one BigTIFF by this checkout's code and by the
    checkout UNETSEG_BASELINE names (a `git worktree`), and `cp` of the file, alternating, each
    to the end of a sync with the page cache equalised: our speed over the baseline's."""
    import os

    from bench.record import checkouts

    code = checkouts()
    if "baseline" not in code:
        raise SystemExit("bench chunk-baseline: set UNETSEG_BASELINE to another checkout")
    baseline = Path(os.environ["UNETSEG_BASELINE"])
    with tempfile.TemporaryDirectory(dir=Path.home()) as folder:
        folder = Path(folder)
        tiff = folder / "volume.tif"
        write_bigtiff(tiff, n_slices=size_gib * 64)

        def to_disk_with(code_path: Path | None, command: list) -> float:
            """Wall time of `command` (with the package at `code_path`) to the end of a sync."""
            env = {**os.environ, "PYTHONPATH": str(code_path)} if code_path else None
            into_page_cache(tiff)
            started = time.perf_counter()
            subprocess.run([str(part) for part in command], check=True, env=env,
                           capture_output=True)  # fmt: skip
            subprocess.run(["sync"], check=True)
            return time.perf_counter() - started

        def chunk_with(name: str, round_: int) -> float:
            return to_disk_with(code[name], chunk_command(tiff, folder / f"{name}-{round_}.zarr"))

        def copy(round_: int) -> float:
            return to_disk_with(None, ["cp", tiff, folder / f"copy-{round_}.tif"])

        medians = alternating_medians(
            {"ours": lambda r: chunk_with("ours", r), "baseline": lambda r: chunk_with("baseline", r),
             "cp": copy}, rounds)  # fmt: skip
        gib = tiff.stat().st_size / 2**30
        record("chunk_vs_baseline", round(medians["baseline"] / medians["ours"], 3),
               "x the baseline's chunking speed", "report", baseline=commit(baseline),
               gib_s={name: round(gib / s, 3) for name, s in medians.items()}, rounds=rounds,
               volume=f"{size_gib * 64}x{SIDE}x{SIDE} uint8 BigTIFF", threads=2)  # fmt: skip


BENCHMARKS = {
    "chunk-baseline": against_baseline,
    "chunk": chunk_benchmarks,
    "codecs": codec_speeds,
    "chunk-plane": plane_benchmarks,
    "export-plane": export_planes,
}
