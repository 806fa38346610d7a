"""Chunking big BigTIFFs: peak memory at two volume sizes, and throughput beside `cp`."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

from bench.record import peak_rss_mb, record

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


def remove(*paths: Path) -> None:
    for path in paths:
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    subprocess.run(["sync"], check=True)


def chunk_benchmarks(sizes_gib=(1, 4)) -> None:
    """chunk_peak_rss_mb_4gb (and the 1 GiB size beside it), and on the largest size chunk_vs_cp
    with the default chunks and chunk_vs_cp_sharded with one shard per slice."""
    with tempfile.TemporaryDirectory(dir=Path.home()) as folder:
        folder = Path(folder)
        store, copy = folder / "v.zarr", folder / "copy.tif"
        for size_gib in sizes_gib:
            tiff = folder / f"volume-{size_gib}g.tif"
            write_bigtiff(tiff, n_slices=size_gib * 64)
            chunk_s, peak = to_disk(tiff, chunk_command(tiff, store))
            gib = tiff.stat().st_size / 2**30
            common = {"volume": f"{size_gib * 64}x{SIDE}x{SIDE} uint8 BigTIFF", "file_gib": round(gib, 2),
                      "chunks": "1x512x512", "codec": "blosc zstd 3 byte shuffle", "threads": 2,
                      "page_cache": "equalised: the file is read once before each contender"}  # fmt: skip
            name = "chunk_peak_rss_mb_4gb" if size_gib == 4 else f"chunk_peak_rss_mb_{size_gib}gb"
            record(name, round(peak), "MB", "<= 500, flat in volume size", seconds=round(chunk_s, 1),
                   **common)  # fmt: skip
            if size_gib == max(sizes_gib):
                store_gib = sum(f.stat().st_size for f in store.rglob("*") if f.is_file()) / 2**30
                remove(store)
                cp_s, _ = to_disk(tiff, ["cp", tiff, copy])
                remove(copy)
                shard = f"1,{SIDE},{SIDE}"
                sharded_s, _ = to_disk(tiff, chunk_command(tiff, store, "--shards", shard))
                note = "both timed to the end of a sync; unetseg chunk includes Python start-up and checks"
                record("chunk_vs_cp", round(cp_s / chunk_s, 3), "x cp throughput", ">= 0.5",
                       chunk_gib_s=round(gib / chunk_s, 3), cp_gib_s=round(gib / cp_s, 3),
                       store_gib=round(store_gib, 2), **common, note=note)  # fmt: skip
                record("chunk_vs_cp_sharded", round(cp_s / sharded_s, 3), "x cp throughput", ">= 0.5",
                       chunk_gib_s=round(gib / sharded_s, 3), cp_gib_s=round(gib / cp_s, 3),
                       **{**common, "shards": shard.replace(",", "x")}, note=note)  # fmt: skip
            remove(tiff, store)


BENCHMARKS = {"chunk": chunk_benchmarks}
