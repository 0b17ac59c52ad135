"""Every image file of a tree checked before training: a fast header and end-of-file check, in parallel.

A truncated JPEG in val/ used to be found only when the split was first decoded, after all training. A
full decode of an ImageNet tree costs minutes; instead each file's header is parsed (PIL reads only the
first bytes: format and size) and, for JPEG and PNG, its last bytes must hold the end marker (JPEG's EOI
FF D9, PNG's IEND chunk) that a truncated file lacks. Only a file without it is decoded in full, so a
valid file with trailing data (some cameras append to JPEGs) still passes.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

from sedona_runtime.utils.errors import SedonaError

PNG_END = b"IEND\xaeB`\x82"
JPEG_END = b"\xff\xd9"
TAIL_BYTES = 64
PROGRESS_EVERY_S = 2.0     # at most one progress call per this many seconds (large trees only)
CHUNK = 1024               # files checked between two progress calls
MAX_THREADS = 16           # file opens release the GIL: threads overlap the I/O of many files

# progress(done, total, elapsed seconds)
Progress = Callable[[int, int, float], None]


def _tail(path: str) -> bytes:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - TAIL_BYTES))
        return f.read()


def check_image(path: str) -> str | None:
    """None when `path` looks like a whole image, else why not (one short phrase)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            fmt, (w, h) = img.format, img.size
            if w < 1 or h < 1:
                return f"empty image ({w}x{h})"
            tail = _tail(path).rstrip(b"\x00\r\n ")
            ends = {"JPEG": JPEG_END, "PNG": PNG_END}.get(fmt or "")
            if ends is None or tail.endswith(ends):
                return None
            img.load()  # no end marker: decode it in full to be sure (raises for a truncated file)
            return None
    except (OSError, ValueError, SyntaxError) as exc:  # PIL's errors for unreadable/truncated files
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    except Exception as exc:  # noqa: BLE001 - a decoder bug is still this file's problem
        return f"{type(exc).__name__}: {exc}"


def check_images(paths: Sequence[str], what: str, *, progress: Progress | None = None,
                 threads: int | None = None) -> float:
    """Check every file of `paths` (check_image) on `threads` threads; the seconds it took.

    `what` names the tree in the error ("ImageFolder /data/x"). Raises SedonaError naming the first bad
    file (in path order), why, and how many others are bad. `progress(done, total, elapsed_s)` is called
    at most every PROGRESS_EVERY_S seconds while it runs, and once at the end when it was called before.
    """
    t0 = time.monotonic()
    total = len(paths)
    threads = threads or min(MAX_THREADS, 2 * (os.cpu_count() or 1))
    bad: list[tuple[str, str]] = []
    reported, last = False, t0
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="image-check") as pool:
        for start in range(0, total, CHUNK):  # chunks: a million pending futures would cost memory
            chunk = paths[start:start + CHUNK]
            bad += [(p, why) for p, why in zip(chunk, pool.map(check_image, chunk)) if why is not None]
            now = time.monotonic()
            if progress is not None and now - last >= PROGRESS_EVERY_S:
                progress(start + len(chunk), total, now - t0)
                reported, last = True, now
    elapsed = time.monotonic() - t0
    if progress is not None and reported:
        progress(total, total, elapsed)
    if bad:
        path, why = bad[0]
        more = f" (and {len(bad) - 1} other bad image file{'s' if len(bad) > 2 else ''})" if len(bad) > 1 else ""
        raise SedonaError(f"{path}: cannot read image ({why}){more}; {what}: {total} image files checked, "
                          "fix or remove the bad ones")
    return elapsed
