"""The ``ddpm-ref`` command line: one subcommand per module in ``ddpm_ref/commands/``.

Layer: command line, the top of the stack. Each subcommand module defines ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``, and imports its heavy modules inside ``run``
(so ``ddpm-ref --help`` stays fast). Subcommands do not import each other.

Exit statuses: 0 done; 1 done with something skipped (``figures --only``); 2 bad input, printed
as **one line** and never a traceback — a ``ValueError`` of any check, a missing or unwritable
file (``OSError``: read-only folders, a full disk), or a size that does not fit (``MemoryError``);
128 + the signal's number when a signal stopped the command (130 Ctrl-C, 143 SIGTERM, 129
SIGHUP; see ``ddpm_ref.interrupts``).
"""

from __future__ import annotations

import argparse
import sys

from ddpm_ref.commands import (bench, demo, edit, evaluate, figures, inpaint, sample, train, train_autoencoder,
                               train_classifier)
from ddpm_ref.interrupts import Aborted, Interrupted, exit_status

SUBCOMMANDS = {"figures": figures, "train": train, "sample": sample, "evaluate": evaluate, "demo": demo,
               "bench": bench, "inpaint": inpaint, "edit": edit, "train-classifier": train_classifier,
               "train-autoencoder": train_autoencoder}


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (argparse's own print the usage first)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ddpm-ref",
        description="ddpm_ref: denoising diffusion probabilistic models in NumPy, by hand.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def _os_error(err: OSError) -> str:
    where = f" ({err.filename})" if err.filename else ""
    return f"{err.strerror or err}{where}" if err.strerror else str(err)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    name = f"ddpm-ref {args.command}"
    try:
        return int(args._run(args) or 0)
    except ValueError as err:
        message = str(err)
    except OSError as err:               # FileNotFoundError, PermissionError, ENOSPC, ...
        message = _os_error(err)
    except MemoryError:
        message = "out of memory (MemoryError); try smaller sizes (--batch-size, -n, --batch)"
    except (Interrupted, Aborted) as err:
        print(f"{name}: {err}", file=sys.stderr)
        return exit_status(err.signum)
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    print(f"{name}: error: {' '.join(message.split())}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
