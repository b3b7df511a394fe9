"""The ``ddpm-ref`` command line: one subcommand per module in ``ddpm_ref/commands/``.

Each subcommand module defines ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``. A subcommand signals bad input by raising ``ValueError`` (or
``FileNotFoundError``); this dispatcher prints it as one line and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Subcommand name -> module under ddpm_ref.commands. Modules are imported lazily so that
# `ddpm-ref --help` stays fast and a subcommand's heavy imports cost only that subcommand.
SUBCOMMANDS = {
    "figures": "figures",
    "train": "train",
    "sample": "sample",
    "evaluate": "evaluate",
    "demo": "demo",
    "bench": "bench",
    "inpaint": "inpaint",
    "edit": "edit",
    "train-classifier": "train_classifier",
    "train-autoencoder": "train_autoencoder",
}


def _available_subcommands():
    """The subcommands whose module exists (later issues add the rest)."""
    found = {}
    for name, module in SUBCOMMANDS.items():
        try:
            found[name] = importlib.import_module(f"ddpm_ref.commands.{module}")
        except ModuleNotFoundError as err:
            if err.name != f"ddpm_ref.commands.{module}":
                raise
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ddpm-ref",
        description="ddpm_ref: denoising diffusion probabilistic models in NumPy, by hand.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module in _available_subcommands().items():
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except (ValueError, FileNotFoundError) as err:
        print(f"ddpm-ref {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ddpm-ref {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
