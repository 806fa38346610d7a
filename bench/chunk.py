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


def chunk_command(tiff: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "unetseg", "chunk", str(tiff), str(out), "--threads", "2"]


def chunk_benchmarks(sizes_gib=(1, 4)) -> None:
    """chunk_peak_rss_mb_4gb (and the 1 GiB size beside it) and chunk_vs_cp."""
    with tempfile.TemporaryDirectory(dir=Path.home()) as folder:
        folder = Path(folder)
        for size_gib in sizes_gib:
            tiff = folder / f"volume-{size_gib}g.tif"
            write_bigtiff(tiff, n_slices=size_gib * 64)
            into_page_cache(tiff)
            started = time.perf_counter()
            peak = peak_rss_mb(chunk_command(tiff, folder / "v.zarr"))
            subprocess.run(["sync"], check=True)  # as for cp: the bytes are on disk
            chunk_s = time.perf_counter() - started
            into_page_cache(tiff)
            started = time.perf_counter()
            subprocess.run(["cp", str(tiff), str(folder / "copy.tif")], check=True)
            subprocess.run(["sync"], check=True)
            cp_s = time.perf_counter() - started
            gib = tiff.stat().st_size / 2**30
            common = {"volume": f"{size_gib * 64}x{SIDE}x{SIDE} uint8 BigTIFF", "file_gib": round(gib, 2),
                      "chunks": "1x512x512", "codec": "blosc zstd 3 byte shuffle", "threads": 2,
                      "page_cache": "equalised: the file is read once before each contender"}  # fmt: skip
            name = "chunk_peak_rss_mb_4gb" if size_gib == 4 else f"chunk_peak_rss_mb_{size_gib}gb"
            record(name, round(peak), "MB", "<= 500, flat in volume size", seconds=round(chunk_s, 1),
                   **common)  # fmt: skip
            if size_gib == max(sizes_gib):
                store_mib = sum(
                    f.stat().st_size for f in (folder / "v.zarr").rglob("*") if f.is_file()
                )
                record("chunk_vs_cp", round(cp_s / chunk_s, 3), "x cp throughput", ">= 0.5",
                       chunk_gib_s=round(gib / chunk_s, 3), cp_gib_s=round(gib / cp_s, 3),
                       store_gib=round(store_mib / 2**30, 2), **common,
                       note="both timed to the end of a sync; unetseg chunk includes Python start-up and checks")  # fmt: skip
            for leftover in (tiff, folder / "copy.tif", folder / "v.zarr"):
                shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()


BENCHMARKS = {"chunk": chunk_benchmarks}
