"""The lessons: every notebook runs top to bottom, is committed clean, and its exercises check.

Each notebook is executed with nbclient in a fresh kernel (the interpreter running pytest), with
the working directory ``lessons/`` and ``DDPM_REF_LESSON_MODE=quick`` (small settings; every
cell still runs). Trained weights go to one temporary run directory shared by the whole session,
so the tiny demo model is trained at most once and never lands in the repository's ``runs/``.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
LESSONS = ROOT / "lessons"
sys.path.insert(0, str(LESSONS))   # the course's checkers live beside the lessons, not in the package
import course as lesson_tools  # noqa: E402
NOTEBOOKS = sorted(LESSONS.glob("[0-9][0-9]_*.ipynb"))

# Quick mode keeps all notebooks together within about 4 minutes on 2 cores; one notebook that
# needs more than this has grown past what CI can afford.
NOTEBOOK_BUDGET_S = 150
CELL_TIMEOUT_S = 150

IMAGE_LINK = re.compile(r"!\[[^\]]*\]\(([^)\s]+)")
CHECK_CALL = re.compile(r"""check\(\s*["'](\d\d\.\d+)["']""")


def _execute(nb, env_extra: dict[str, str]):
    env = dict(os.environ, **env_extra)
    client = NotebookClient(
        nb,
        kernel_name="python3",       # jupyter_client starts it with sys.executable (this venv)
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(LESSONS)}},
    )
    client.execute(env=env)
    return nb


@pytest.fixture(scope="session")
def lesson_run_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("lesson_runs") / "demo"


def test_there_are_lessons():
    assert len(NOTEBOOKS) >= 11, f"expected the course's notebooks in {LESSONS}"


def test_kernel_runs_this_interpreter():
    """The notebook kernel is the Python running pytest, not whatever `python` is on PATH."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import sys; print(sys.executable)")])
    _execute(nb, {})
    printed = nb.cells[0].outputs[0]["text"].strip()
    assert Path(printed).resolve() == Path(sys.executable).resolve()


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_quick_mode(path, lesson_run_dir):
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    _execute(nb, {"DDPM_REF_LESSON_MODE": "quick", "DDPM_REF_LESSON_RUN_DIR": str(lesson_run_dir)})
    elapsed = time.perf_counter() - start
    assert elapsed < NOTEBOOK_BUDGET_S, f"{path.name} took {elapsed:.0f} s in quick mode"
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert not cell.outputs, f"{path.name} cell {i} has outputs; clear them before committing"
            assert cell.execution_count is None, f"{path.name} cell {i} has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_embedded_figures_exist(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for link in IMAGE_LINK.findall(cell.source):
                assert (LESSONS / link).resolve().is_file(), f"{path.name} embeds {link}, which does not exist"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_has_settings_cell_and_exercises(path):
    nb = nbformat.read(path, as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "lesson_mode()" in code, f"{path.name} has no settings cell reading DDPM_REF_LESSON_MODE"
    ids = CHECK_CALL.findall(code)
    assert len(ids) >= 2, f"{path.name} has fewer than 2 checked exercises"
    lesson = path.name[:2]
    assert all(i.startswith(lesson + ".") for i in ids), f"{path.name} checks another lesson's exercises: {ids}"


def test_every_exercise_is_used_by_a_notebook():
    used = set()
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        used.update(CHECK_CALL.findall("\n".join(c.source for c in nb.cells if c.cell_type == "code")))
    lesson_tools._load_answers()
    assert used <= set(lesson_tools.EXERCISES), f"unregistered: {sorted(used - set(lesson_tools.EXERCISES))}"
    lessons_present = {p.name[:2] for p in NOTEBOOKS}
    registered = {e for e in lesson_tools.EXERCISES if e[:2] in lessons_present}
    assert registered <= used, f"registered but never asked: {sorted(registered - used)}"


def _exercise_ids():
    lesson_tools._load_answers()
    return sorted(lesson_tools.EXERCISES)


@pytest.mark.parametrize("ex_id", _exercise_ids())
def test_exercise_accepts_its_solution(ex_id):
    solution = lesson_tools.EXERCISES[ex_id].solution
    ok, message = lesson_tools.grade(ex_id, solution())
    assert ok is True, message


@pytest.mark.parametrize("ex_id", _exercise_ids())
def test_exercise_rejects_a_wrong_or_missing_answer(ex_id, capsys):
    assert lesson_tools.grade(ex_id, ...)[0] is None
    lesson_tools.check(ex_id, ...)
    assert "not answered yet" in capsys.readouterr().out
    assert lesson_tools.grade(ex_id, 12345.678)[0] is False
    assert lesson_tools.grade(ex_id, lambda *args, **kwargs: None)[0] is not True
    lesson_tools.check(ex_id, 12345.678)
    assert "not yet." in capsys.readouterr().out


@pytest.mark.parametrize("ex_id", _exercise_ids())
def test_exercise_rejects_its_plausible_wrong_answers(ex_id):
    """Each registered mistake (off-by-one t, β for β̃, a missing square root, ...) is rejected."""
    ex = lesson_tools.EXERCISES[ex_id]
    for what, wrong in ex.wrong.items():
        ok, message = lesson_tools.grade(ex_id, wrong())
        assert ok is False, f"exercise {ex_id} accepted a wrong answer ({what}): {message}"


def test_hints_come_in_tiers(capsys):
    """hint() gives one tier per call and ends with the solution's source."""
    ex_id = next(e for e in _exercise_ids() if lesson_tools.EXERCISES[e].hints)
    ex = lesson_tools.EXERCISES[ex_id]
    ex.hints_given = 0
    for tier in ex.hints:
        lesson_tools.hint(ex_id)
        assert tier in capsys.readouterr().out
    lesson_tools.hint(ex_id)
    assert "solution" in capsys.readouterr().out.lower()
    ex.hints_given = 0
