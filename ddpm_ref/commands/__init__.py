"""Subcommands of the ``ddpm-ref`` command line, one module each (see ``ddpm_ref.cli``).

Layer: command line (imports anything below it; commands do not import each other).
"""
