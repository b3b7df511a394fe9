"""Checks the commands make before any work: values finite and in range, outputs writable.

Layer: command line (used by ``ddpm_ref/commands/*``; imports nothing of ddpm_ref).

Each check raises ``ValueError`` naming the flag and what is allowed; ``ddpm_ref.cli`` prints it
as one line and exits with status 2. A command calls them at its top, so a typo costs nothing:
an unwritable ``--out`` is found before minutes of sampling, not after.
"""

from __future__ import annotations

import argparse
import math
import numbers
import os
import tempfile

__all__ = ["count", "check_seed", "check_number", "check_output_file", "check_output_dir", "add_resume_flags"]


def count(text: str) -> int:
    """argparse type for sizes: an integer, also written ``1e6`` or ``10_000`` (not ``2.5``)."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value != int(value):
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}")
    return int(value)


def check_seed(value, name: str = "--seed") -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)


def check_number(name: str, value, low=None, high=None) -> float:
    """``value`` as a float, or ValueError unless it is finite and within [low, high] (None: open)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (low is not None and value < low) or (high is not None and value > high):
        allowed = "a finite number" + (f" >= {low:g}" if low is not None else "") + \
                  (f"{' and' if low is not None else ''} <= {high:g}" if high is not None else "")
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return float(value)


def _probe(directory: str, name: str) -> None:
    """Create and delete a file in ``directory`` (the only sure test that writing works there)."""
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as err:
        raise ValueError(f"{name}: cannot write in {directory!r} ({err.strerror})") from None


def check_output_dir(path, name: str) -> str:
    """Create the directory ``path`` if needed and check that files can be written in it."""
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{name} {path!r} is a file, not a directory")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        raise ValueError(f"{name} {path!r} cannot be created ({err.strerror})") from None
    _probe(path, name)
    return path


def check_output_file(path, name: str) -> str:
    """Check that the file ``path`` can be written: not a directory, its folder creatable and writable."""
    path = os.fspath(path)
    if not path or path.endswith(os.sep) or os.path.isdir(path):
        raise ValueError(f"{name} {path!r} is a directory; give a file name")
    check_output_dir(os.path.dirname(os.path.abspath(path)), name)
    return path


def add_resume_flags(parser: argparse.ArgumentParser, changeable: str = "--steps, --checkpoint-every and --lr") -> None:
    """--resume, --overwrite and --no-progress, as the training commands of the classifier and autoencoder take them."""
    parser.add_argument("--resume", action="store_true",
                        help=f"continue the run in --run-dir: flags left out keep the saved values; only "
                             f"{changeable} may change")
    parser.add_argument("--overwrite", action="store_true", help="start a new run in a --run-dir that holds one")
    parser.add_argument("--no-progress", action="store_true")
