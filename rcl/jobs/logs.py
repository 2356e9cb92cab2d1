"""A job's log and history as the user reads them: the end of ``train.log``, the per-epoch rows."""

from __future__ import annotations

import os
from pathlib import Path

LOG_TAIL_IN_ERROR = 20  # lines of train.log quoted in a failed job's error
LOG_MARKER = "--- last lines of train.log ---"  # between a failure's reason and the log it quotes


def tail(path: Path, lines: int) -> str:
    """The last ``lines`` lines of a log, reading only its end; carriage-return redraws collapsed."""
    if lines <= 0 or not path.is_file():
        return ""
    with path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        chunk = min(size, max(64 * 1024, lines * 400))
        fh.seek(size - chunk)
        text = fh.read().decode("utf-8", errors="replace")
    out = [line.rstrip("\r").rsplit("\r", 1)[-1] for line in text.split("\n")]
    if chunk < size:
        out = out[1:]  # the first line is cut
    if out and out[-1] == "":
        out = out[:-1]
    return "\n".join(out[-lines:])


def with_log(reason: str, log_path: Path) -> str:
    """A failure reason followed by the last lines of the job's log."""
    text = tail(log_path, LOG_TAIL_IN_ERROR)
    return f"{reason}\n{LOG_MARKER}\n{text}" if text else reason
