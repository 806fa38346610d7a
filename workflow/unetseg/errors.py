"""The one exception type for user errors: the CLI prints it as one line and exits non-zero;
and out-of-memory errors told as one line."""

from __future__ import annotations

import re


class UnetsegError(Exception):
    """A problem with the user's input or configuration; the message names the file or key."""


def out_of_memory(error: BaseException) -> str | None:
    """torch's out-of-memory error (a GPU's, or its CPU allocator's) or numpy's, as what ran out
    and how much was asked for; None for any other error. Without importing torch, so that the
    CLI's commands that do not use it start as fast."""
    text = str(error)
    if type(error).__name__ == "OutOfMemoryError":  # torch.OutOfMemoryError: CUDA's allocator
        total = re.search(r"GPU (\d+) has a total capacity of ([\d.]+ \w+)", text)
        where = f"GPU {total[1]} ({total[2]})" if total else "the GPU"
        asked = re.search(r"Tried to allocate ([\d.]+) (\w+)", text)
    elif "DefaultCPUAllocator: can't allocate memory" in text:  # torch's CPU allocator
        where, asked = "the CPU", re.search(r"tried to allocate (\d+) (bytes)", text)
    elif isinstance(error, MemoryError):  # numpy: "Unable to allocate 2.00 GiB for an array ..."
        where, asked = "the CPU", re.search(r"Unable to allocate ([\d.]+) (\w+)", text)
    else:
        return None
    if asked and asked[2] in UNITS:
        size = float(asked[1]) * 1024 ** UNITS.index(asked[2])
        return f"{where} ran out of memory allocating {binary(size)}"
    return f"{where} ran out of memory"


UNITS = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB"]


def binary(size: float) -> str:
    """A number of bytes in the largest binary unit it fills, e.g. 0.99 GiB as 1013.76 MiB."""
    power = 0
    while size >= 1024 and power < len(UNITS) - 1:
        size, power = size / 1024, power + 1
    return f"{size:.2f} {UNITS[power]}"
