"""One run directory, one writer: the lock file ``<run_dir>/.lock``, and the checks done before a run.

Layer: loop (used by ``ddpm_ref.train``; imports nothing of ddpm_ref).

``RunLock(run_dir)`` creates ``.lock`` with ``O_CREAT | O_EXCL`` (only one process can create it)
and writes ``{"pid": ..., "host": ..., "started": ...}`` into it; leaving the ``with`` block
removes it. When the file already exists:

* its process is gone (same host, no such pid): the lock is **stale** (a run killed with
  ``kill -9``, a crash, a power cut). It is taken over with a message. The takeover holds an
  ``flock`` on the run directory, so two processes that find the same stale lock cannot both
  take it;
* otherwise (the process runs, or the lock is another host's, which cannot be checked): a
  ``ValueError`` names the pid and host, and says to delete the file if that run is certainly gone.

While it holds the lock, a run also removes the temporary files that a killed checkpoint write
leaves behind (``.tmp-checkpoint.npz-*``): no other process can be writing them.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import socket
import time

__all__ = ["LOCK_NAME", "RunLock", "check_run_dir", "remove_stale_temporaries"]

LOCK_NAME = ".lock"


def check_run_dir(run_dir: str, files=("checkpoint.npz", "config.json")) -> str:
    """Create ``run_dir`` if needed and check it can hold a run; returns it. ValueError otherwise.

    A run directory must be a directory (not a file, not under a file, not ``something.npz``),
    writable, and its ``files`` must not be directories.
    """
    run_dir = os.fspath(run_dir)
    if run_dir.endswith(".npz"):
        raise ValueError(f"--run-dir {run_dir!r} ends in .npz; a run directory is a folder "
                         "(checkpoint.npz goes inside it)")
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise ValueError(f"--run-dir {run_dir!r} is a file, not a directory")
    try:
        os.makedirs(run_dir, exist_ok=True)
    except OSError as err:
        raise ValueError(f"--run-dir {run_dir!r} cannot be created ({err.strerror})") from None
    for name in files:
        if os.path.isdir(os.path.join(run_dir, name)):
            raise ValueError(f"{os.path.join(run_dir, name)!r} is a directory; the run needs a file there")
    if not os.access(run_dir, os.W_OK | os.X_OK):
        raise ValueError(f"--run-dir {run_dir!r} is not writable")
    return run_dir


def remove_stale_temporaries(run_dir: str) -> list[str]:
    """Delete ``.tmp-*`` files left in ``run_dir`` by an interrupted atomic write; returns them.
    Call it only while holding the run's lock."""
    removed = []
    for path in glob.glob(os.path.join(glob.escape(run_dir), ".tmp-*")):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
            removed.append(path)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:          # exists, another user's
        return True
    return True


def _read(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
        return info if isinstance(info, dict) else None
    except (OSError, ValueError):
        return None


class RunLock:
    """``with RunLock(run_dir):`` — hold the run directory's lock (see the module docstring)."""

    def __init__(self, run_dir: str, message=print):
        self.path = os.path.join(os.fspath(run_dir), LOCK_NAME)
        self.run_dir = os.fspath(run_dir)
        self.message = message
        self.info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(self.info, f)
        return True

    def _is_stale(self, held: dict | None) -> bool:
        if held is None:          # unreadable: a writer that died between create and write, or garbage
            try:
                return time.time() - os.path.getmtime(self.path) > 10.0
            except OSError:
                return False
        return held.get("host") == self.info["host"] and not _pid_alive(int(held.get("pid", -1)))

    def _take_over(self) -> bool:
        """Under an flock of the directory: if the lock is (still) stale, replace it by ours."""
        with _dir_flock(self.run_dir):
            held = _read(self.path)
            if not os.path.exists(self.path):
                return self._create()
            if not self._is_stale(held):
                return False
            os.unlink(self.path)
            if not self._create():
                return False
        who = f"pid {held['pid']} on {held['host']}" if held else "an unreadable lock"
        self.message(f"{self.run_dir}: took over the lock of a run that is gone ({who})")
        return True

    def acquire(self) -> "RunLock":
        if self._create() or self._take_over():
            return self
        held = _read(self.path) or {}
        raise ValueError(f"{self.run_dir} is in use by another training run (pid {held.get('pid', '?')} on "
                         f"{held.get('host', '?')}); one run directory takes one writer. If that run is "
                         f"certainly gone, delete {self.path}")

    def release(self) -> None:
        held = _read(self.path)
        if held is not None and held.get("pid") == self.info["pid"] and held.get("host") == self.info["host"]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        # A Ctrl-C arriving while the lock is released (e.g. the second of two quick ones, after the
        # handlers of ddpm_ref.interrupts are gone) must not leave the lock behind: hold the three
        # stop signals for the few instructions of the release; they are delivered right after.
        try:
            with _signals_held():
                self.release()
        except KeyboardInterrupt:           # it came in before the signals were held: release anyway
            self.release()
            raise
        return False


@contextlib.contextmanager
def _signals_held():
    """Block SIGINT, SIGTERM and SIGHUP in this thread for the block (POSIX, main thread); a signal
    sent meanwhile is delivered when the block ends."""
    import signal
    import threading

    mask = getattr(signal, "pthread_sigmask", None)
    if mask is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    stop = {signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", signal.SIGTERM)}
    old = mask(signal.SIG_BLOCK, stop)
    try:
        yield
    finally:
        mask(signal.SIG_SETMASK, old)


@contextlib.contextmanager
def _dir_flock(directory: str):
    """An exclusive ``flock`` on ``directory`` (released when the block ends or the process dies)."""
    try:
        import fcntl
    except ImportError:           # not POSIX: takeovers are then not serialised
        yield
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
