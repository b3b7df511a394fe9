"""Ctrl-C, SIGTERM and SIGHUP during training: stop at a step boundary, or at once without writing.

Layer: loop (used by ``ddpm_ref.train``; imports nothing of ddpm_ref).

* The **first** signal only sets a flag. The training loop looks at it after each whole step,
  saves the checkpoint of that step and raises ``Interrupted``. So a checkpoint is only ever the
  state at a step boundary.
* A **second** signal raises ``Aborted`` at once, wherever the program is. Nothing is written
  after it: a checkpoint write in progress is abandoned (its temporary file is removed, the
  previous checkpoint stays), and the message says where the last good checkpoint is.

Both are ``KeyboardInterrupt`` subclasses, so a notebook or a script that runs ``train`` sees an
ordinary interrupt. The command line exits with 128 + the signal's number (130 for Ctrl-C, 143 for
SIGTERM, 129 for SIGHUP), as shells do.

Signal handlers can only be installed in the main thread; elsewhere ``stop_requests`` does nothing
(the flag simply never rises) and the caller's own handling applies.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading

__all__ = ["Interrupted", "Aborted", "StopRequest", "stop_requests", "exit_status"]

#: The signals that ask a run to stop (SIGHUP: the terminal was closed; POSIX only).
STOP_SIGNALS = tuple(s for s in (signal.SIGINT, getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None))
                     if s is not None)


def exit_status(signum: int) -> int:
    """The shell's convention for a process ended by a signal: 128 + its number."""
    return 128 + int(signum)


def signal_name(signum: int) -> str:
    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name


class Interrupted(KeyboardInterrupt):
    """The run stopped at a step boundary after a first signal; ``saved`` says what is on disk."""

    def __init__(self, signum: int, step: int, saved: str):
        self.signum, self.step, self.saved = signum, step, saved
        super().__init__(f"{signal_name(signum)}: stopped after step {step}; {saved}")


class Aborted(KeyboardInterrupt):
    """A second signal: stopped at once, nothing written. ``last_good`` describes what is on disk."""

    def __init__(self, signum: int, last_good: str):
        self.signum, self.last_good = signum, last_good
        super().__init__(f"{signal_name(signum)} again: stopped at once without saving; {last_good}")


class StopRequest:
    """The flag the loop reads (``signum`` is None until a signal came) and what the second one says.

    ``last_good`` is kept up to date by the loop (the last checkpoint it wrote) so that a second
    signal can name it.
    """

    def __init__(self):
        self.signum: int | None = None
        self.last_good = "no checkpoint has been written by this run"

    def __bool__(self) -> bool:
        return self.signum is not None

    def _handle(self, signum, frame):
        if self.signum is not None:
            raise Aborted(signum, self.last_good)
        self.signum = signum
        # os.write, not print: the main thread may be inside a write to stderr (the progress bar),
        # and a buffered write re-entered from a signal handler raises RuntimeError.
        os.write(2, f"\n{signal_name(signum)}: stopping after this step and saving; "
                    f"send it again to stop at once without saving\n".encode())


@contextlib.contextmanager
def stop_requests():
    """Install the handlers for ``STOP_SIGNALS`` while the block runs; yields the ``StopRequest``."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {s: signal.signal(s, request._handle) for s in STOP_SIGNALS}
    try:
        yield request
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
