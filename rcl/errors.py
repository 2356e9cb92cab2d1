"""One error boundary for the command line and the app: an exception becomes one plain line.

``user_message(exc)`` says what failed and what to do for the faults a user can meet and fix
(a full or read-only disk, a damaged file, a symlink loop, a broken job database, a bad value);
it returns ``None`` for anything else, which is a bug: ``explain`` then names the exception and
points at ``--debug`` / ``RCL_DEBUG=1`` for the traceback. ``UserError`` is the base class for
errors whose message is already that line; ``DataWarning`` is what the data layer warns with.

Handlers are registered by the exception's qualified class name and looked up along its MRO, so
this module imports neither torch, safetensors nor Pillow.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

DEBUG_ENV = "RCL_DEBUG"
MAX_LINE = 400  # a message longer than this is cut: one line means one readable line
DEBUG_HINT = f"run again with --debug (or {DEBUG_ENV}=1) to see the traceback"


class UserError(ValueError):
    """An ordinary fault the user can fix; its message is the whole story (no traceback)."""


class DataWarning(UserWarning):
    """A dataset or matrix that can be used but probably not as the user meant (shown, stored)."""


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def one_line(text: str) -> str:
    """The text on one line (runs of whitespace collapsed), cut at ``MAX_LINE`` characters."""
    line = " ".join(str(text).split())
    return line if len(line) <= MAX_LINE else line[: MAX_LINE - 1] + "…"


# -- handlers: each returns the line for its exception, or None to let a parent class decide -------
Handler = Callable[[BaseException], "str | None"]
_HANDLERS: dict[str, Handler] = {}


def handles(*names: str):
    """Register a handler for the exception classes named ``module.QualName``."""

    def wrap(handler: Handler) -> Handler:
        for name in names:
            _HANDLERS[name] = handler
        return handler

    return wrap


def _where(exc: OSError) -> str:
    name = exc.filename if exc.filename is not None else exc.filename2
    return f" ({name})" if name is not None else ""


DISK_FULL = "the disk is full{where}: free some space (or set RCL_HOME to a folder on a larger disk) and run it again"
_OS_ERRORS: dict[int, str] = {
    errno.ENOSPC: DISK_FULL,
    errno.EDQUOT: "the disk quota is exhausted{where}: free some space and run it again",
    errno.EROFS: "the file system is read-only{where}: set RCL_HOME to a writable folder",
    errno.EACCES: "permission denied{where}: check the folder's permissions or set RCL_HOME to a folder you own",
    errno.EPERM: "operation not permitted{where}: check the folder's permissions or set RCL_HOME to a folder you own",
    errno.ELOOP: "a symbolic link loops back on itself{where}: remove or fix that link",
    errno.ENOENT: "no such file or folder{where}: check the path",
    errno.ENOTDIR: "a path component is not a folder{where}: check the path",
    errno.EISDIR: "expected a file but found a folder{where}: give a file",
    errno.ENAMETOOLONG: "a file name is too long{where}: use a shorter path",
    errno.EIO: "the disk reported an input/output error{where}: check the disk and run it again",
}


@handles("builtins.OSError")
def _os_error(exc: BaseException) -> str | None:
    assert isinstance(exc, OSError)
    template = _OS_ERRORS.get(exc.errno)
    if template is not None:
        return template.format(where=_where(exc))
    if exc.strerror:
        return f"{exc.strerror}{_where(exc)}"
    return None


@handles("builtins.BrokenPipeError")
def _broken_pipe(exc: BaseException) -> str:
    return "the output was closed before everything was written"


@handles("safetensors._safetensors_rust.SafetensorError")
def _safetensors(exc: BaseException) -> str:
    text = str(exc)
    if "No space left" in text or "StorageFull" in text or "os error 28" in text:
        return DISK_FULL.format(where=" while saving model weights")
    return f"model weights (.safetensors) could not be read or written: {text}; delete the damaged file and retry"


@handles("_pickle.UnpicklingError", "pickle.UnpicklingError")
def _unpickling(exc: BaseException) -> str:
    return f"a saved checkpoint (.pt) is damaged ({exc}): delete it or pass --overwrite"


@handles("PIL.Image.DecompressionBombError")
def _bomb(exc: BaseException) -> str:
    return "an image has far more pixels than a photograph (a possible decompression bomb): it was not decoded"


@handles("sqlite3.Error")
def _sqlite(exc: BaseException) -> str:
    from rcl.paths import jobs_db

    return (f"the job database {jobs_db()} failed ({exc}): check that its disk has space and is writable; "
            "if the file is damaged, move it aside (the jobs listed in it are lost, run folders are not)")


@handles("builtins.OverflowError")
def _overflow(exc: BaseException) -> str:
    return f"a number is out of range ({exc}): give a smaller value"


@handles("builtins.MemoryError")
def _memory(exc: BaseException) -> str:
    return "out of memory: try a smaller --batch-size, --image-size or --limit"


@handles("torch.OutOfMemoryError")
def _gpu_memory(exc: BaseException) -> str:
    return "the GPU ran out of memory: try a smaller --batch-size or --image-size, or --device cpu"


@handles("builtins.ImportError")
def _import(exc: BaseException) -> str:
    return f"a required package could not be imported ({exc}): reinstall the environment (`make run` sets it up)"


@handles("builtins.ValueError", "builtins.RuntimeError")
def _plain(exc: BaseException) -> str | None:
    return str(exc) or None  # these carry the library's own one-line messages


def user_message(exc: BaseException) -> str | None:
    """One line saying what failed and what to do, or None when ``exc`` is not an ordinary fault."""
    for cls in type(exc).__mro__:
        handler = _HANDLERS.get(f"{cls.__module__}.{cls.__qualname__}")
        if handler is not None:
            message = handler(exc)
            if message:
                return one_line(message)
    return None


def explain(exc: BaseException) -> str:
    """``user_message``, or for an unexpected exception its type and text with the debug hint."""
    message = user_message(exc)
    if message is not None:
        return message
    detail = f": {exc}" if str(exc) else ""
    return one_line(f"unexpected error ({type(exc).__name__}{detail}); {DEBUG_HINT}")
