"""The tail of the minutes-long benchmarks' command lines (``latent_vs_pixel``, ``prompt_holdout``).

Each runs a measurement, prints its report, and with ``--json PATH`` writes the result together with
the command that made it, so that a committed run says how to reproduce it. ``--json`` is checked
writable before the minutes of work; a ValueError (a bad option) is one line on stderr and exit
status 2, as everywhere in ddpm_ref.

Layer: tooling (bench).
"""

from __future__ import annotations

import sys

__all__ = ["run_and_report"]


def run_and_report(module: str, argv, json_path, run, report) -> int:
    """``run()`` → result dict; print ``report(result)``; write it (with its command) to ``json_path`` if given.

    ``module``: the ``python -m`` name recorded as the command; ``argv``: the arguments given (None:
    ``sys.argv[1:]``). Returns the exit status.
    """
    try:
        if json_path:
            from ddpm_ref.preflight import check_output_file

            check_output_file(json_path, "--json")
        res = run()
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    res["command"] = f"python -m {module} " + " ".join(sys.argv[1:] if argv is None else argv)
    print(report(res))
    if json_path:
        from ddpm_ref.checkpoint import write_json_atomic

        write_json_atomic(json_path, res)
    return 0
