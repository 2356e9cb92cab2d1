"""Files written as a unit: a reader (the app, a job monitor, a resumed run) sees the old file or
the new one, never half of one, even after a kill or a power cut mid-write.

Each write goes to a temporary file in the same folder, is flushed to disk (``fsync``), and is
renamed over the target (an atomic replace on POSIX and Windows).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows: directories cannot be opened; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_with(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` and move the result over ``path`` atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def write_text(path: str | Path, text: str) -> None:
    write_with(path, lambda tmp: tmp.write_text(text))


def write_json(path: str | Path, data) -> None:
    write_text(path, json.dumps(data, indent=2, default=float))


def append_line(path: str | Path, line: str) -> None:
    """Append one line to a log that is only ever appended to (a review file), durably.

    An exclusive ``flock`` keeps two writers' lines whole; the line goes out in one ``write`` and is
    ``fsync``-ed before returning. A last line left without its newline by a crash is closed first,
    so the new line never merges with it (the reader skips such a torn line).
    """
    import fcntl

    path = Path(path)
    created = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    data = line.rstrip("\n").encode() + b"\n"
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        end = handle.seek(0, os.SEEK_END)
        if end:
            handle.seek(end - 1)
            if handle.read(1) != b"\n":
                data = b"\n" + data
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    if created:
        _fsync_dir(path.parent)


def save_npz(path: str | Path, compressed: bool = False, **arrays) -> None:
    """``np.savez`` (or ``savez_compressed``) written as a unit."""
    import numpy as np

    save = np.savez_compressed if compressed else np.savez

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            save(handle, **arrays)

    write_with(path, write)
