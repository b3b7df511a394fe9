"""Subcommands of the ``ddpm-ref`` command line, one module each (see ``ddpm_ref.cli``)."""
