"""Job child processes: how they are started, recognised (pid reuse guarded) and stopped.

A job child leads its own process group (``start_new_session``), so signalling the group reaches
its data-loader workers too. Its start time (``/proc/<pid>/stat``) is stored with its pid: a later
worker adopts a process only if both still match, never a stranger that reused the pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path

import rcl

KILL_GRACE = 5.0  # seconds between SIGTERM and SIGKILL

# The package this process runs; children import the same one, whatever their working directory holds.
PACKAGE_ROOT = Path(rcl.__file__).resolve().parent.parent


def python_command() -> list[str]:
    """This interpreter, not putting the working directory on ``sys.path`` (``-P``, Python 3.11+)."""
    return [sys.executable, "-P"] if sys.version_info >= (3, 11) else [sys.executable]


def child_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a worker or job child started in the data directory ``home``.

    The package root goes first on ``PYTHONPATH`` unless it is an install's site-packages (already on
    the path), so a folder named ``rcl`` in the data directory cannot shadow the package. Paths
    that rcl reads from the environment are made absolute: the child runs in another directory.
    """
    env = {**os.environ, "RCL_HOME": str(home), "PYTHONUNBUFFERED": "1", "PYTHONSAFEPATH": "1", **extra}
    for name in ("RCL_CACHE", "RCL_MODELS"):
        if env.get(name):
            env[name] = str(Path(env[name]).expanduser().resolve())
    if PACKAGE_ROOT.name not in ("site-packages", "dist-packages"):
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PACKAGE_ROOT), env.get("PYTHONPATH")) if p)
    return env


def pid_alive(pid: int | None) -> bool:
    """True for a live process (a zombie, already dead but not reaped, counts as gone)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux ``/proc``); None where unknown."""
    with contextlib.suppress(OSError, IndexError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    return None


def is_job_child(pid: int | None, started: str | None = None) -> bool:
    """A live process leading its own group, as every job child does, started at ``started`` if given."""
    if not pid_alive(pid):
        return False
    try:
        if os.getpgid(pid) != pid:
            return False
    except ProcessLookupError:
        return False
    now = start_time(pid) if started is not None else None
    return now is None or now == started


def visible_gpu(pid: int) -> str | None:
    """The ``CUDA_VISIBLE_DEVICES`` a running process was started with (None: unknown or unset)."""
    with contextlib.suppress(OSError):
        for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
            if item.startswith(b"CUDA_VISIBLE_DEVICES="):
                return item.split(b"=", 1)[1].decode() or None
    return None


def signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def stop_group(pid: int, grace: float = KILL_GRACE) -> None:
    """SIGTERM a job child's process group, then SIGKILL it if still alive after ``grace`` seconds."""
    signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid_alive(pid):
        signal_group(pid, signal.SIGKILL)


def exit_reason(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (out of memory, or killed by hand)" if -code == signal.SIGKILL else ""
        return f"the training process was killed by {name}{hint}"
    return f"the training process exited with code {code}"
