"""Publish the course: execute every lesson and write a rendered HTML copy, with outputs, to a folder.

    python lessons/publish.py --out site/                  # every lesson, the students' settings
    python lessons/publish.py --out site/ --only 03 --only 09
    python lessons/publish.py --out /tmp/check --mode quick  # a fast dry run (CI's settings)

Each notebook runs top to bottom in a fresh kernel (the Python running this script) with the
working directory ``lessons/``, exactly as a student runs it, with ``DDPM_REF_LESSON_MODE`` set
from ``--mode``. The committed notebooks are not modified: the executed copies go only into the
HTML. The output folder gets one ``NN_name.html`` per lesson (images embedded), an ``index.html``
that links them in order, and a copy of ``figures/`` so that the pictures the lessons embed from
``../figures/`` show. A lesson that fails is reported (notebook, cell, error) and the others still
run; the exit status is then 1. Needs the ``course`` extra: ``pip install -e ".[course]"``.
"""

from __future__ import annotations

import argparse
import html
import os
import shutil
import sys
import time
from pathlib import Path

LESSONS = Path(__file__).resolve().parent
FIGURES = LESSONS.parent / "figures"
MODES = ("quick", "default", "full")


def lesson_paths(only=None) -> list[Path]:
    """The lesson notebooks in order, or those whose number (``"03"``) or stem is in ``only``."""
    paths = sorted(LESSONS.glob("[0-9][0-9]_*.ipynb"))
    if only:
        wanted = set(only)
        unknown = wanted - {p.name[:2] for p in paths} - {p.stem for p in paths}
        if unknown:
            raise ValueError(f"--only {', '.join(sorted(unknown))}: no such lesson; "
                             f"choose from {', '.join(p.name[:2] for p in paths)}")
        paths = [p for p in paths if p.name[:2] in wanted or p.stem in wanted]
    return paths


def execute(path: Path, mode: str, timeout: int):
    """The notebook at ``path`` executed in a fresh kernel from ``lessons/`` (returns the executed copy)."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    env = dict(os.environ, DDPM_REF_LESSON_MODE=mode)
    client = NotebookClient(nb, kernel_name="python3", timeout=timeout,
                            resources={"metadata": {"path": str(LESSONS)}})
    client.execute(env=env)
    return nb


def to_html(nb, title: str) -> str:
    """One self-contained HTML page; links to ``../figures/`` are pointed at the copied ``figures/``."""
    from nbconvert import HTMLExporter

    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = cell.source.replace("](../figures/", "](figures/")
    body, _ = HTMLExporter(template_name="classic").from_notebook_node(nb, resources={"metadata": {"name": title}})
    return body


def write_index(out: Path, pages: list[tuple[str, str, str]]) -> None:
    """``index.html``: the lessons in order, each with its status."""
    rows = "\n".join(f'<li><a href="{html.escape(file)}">{html.escape(title)}</a>{html.escape(note)}</li>'
                     for file, title, note in pages)
    out.joinpath("index.html").write_text(
        "<!doctype html><meta charset='utf-8'><title>ddpm_ref: the course</title>\n"
        "<h1>ddpm_ref: the course</h1>\n<ol>\n" + rows + "\n</ol>\n", encoding="utf-8")


def publish(out: Path, only=None, mode: str = "default", timeout: int = 600, progress=print) -> list[str]:
    """Execute the lessons and write the site into ``out``; returns the failures (empty: all ran)."""
    paths = lesson_paths(only)
    out.mkdir(parents=True, exist_ok=True)
    if FIGURES.is_dir():
        shutil.copytree(FIGURES, out / "figures", dirs_exist_ok=True)
    pages, failures = [], []
    for i, path in enumerate(paths, 1):
        t0 = time.perf_counter()
        progress(f"[{i}/{len(paths)}] {path.name} ...")
        try:
            nb = execute(path, mode, timeout)
            note = ""
        except Exception as err:  # nbclient raises CellExecutionError, DeadKernelError, timeouts
            first = str(err).strip().splitlines()
            failures.append(f"{path.name}: {type(err).__name__}: {first[-1] if first else ''}")
            import nbformat

            nb, note = nbformat.read(path, as_version=4), " (failed to run: shown without outputs)"
        page = path.with_suffix(".html").name
        (out / page).write_text(to_html(nb, path.stem), encoding="utf-8")
        pages.append((page, path.stem.replace("_", " "), note))
        progress(f"      wrote {out / page} in {time.perf_counter() - t0:.0f} s{note}")
    write_index(out, pages)
    return failures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python lessons/publish.py", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="the folder to write the HTML site into")
    parser.add_argument("--only", action="append", metavar="NN", help="only this lesson (repeatable)")
    parser.add_argument("--mode", choices=MODES, default="default",
                        help="the lessons' settings (default: what a student runs; quick: CI's)")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell (default: 600)")
    args = parser.parse_args(argv)
    try:
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {args.out}: exists and is not a folder")
        if args.timeout < 1:
            raise ValueError(f"--timeout must be >= 1 second, got {args.timeout}")
        import nbclient  # noqa: F401
        import nbconvert  # noqa: F401
    except ImportError as err:
        print(f"publish: {err.name} is missing; install the course extra: pip install -e \".[course]\"",
              file=sys.stderr)
        return 2
    except ValueError as err:
        print(f"publish: {err}", file=sys.stderr)
        return 2
    try:
        failures = publish(out, args.only, args.mode, args.timeout)
    except (ValueError, OSError) as err:
        print(f"publish: {err}", file=sys.stderr)
        return 2
    for f in failures:
        print(f"FAILED {f}", file=sys.stderr)
    print(f"{out / 'index.html'}: {len(lesson_paths(args.only)) - len(failures)} lesson(s) published"
          + (f", {len(failures)} failed" if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
