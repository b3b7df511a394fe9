"""Helpers for the notebooks in ``lessons/``: settings presets, the shared run directory, and
exercise checks that tell a student whether an answer is right.

This folder sits beside the notebooks and is not part of the installed package: ``import course``
works from ``lessons/`` (a notebook's working directory), and the answer key is not importable
from ``ddpm_ref``.

A lesson's settings cell reads the environment variable ``DDPM_REF_LESSON_MODE``:

* ``quick``: tiny settings, used by CI (``tests/test_lessons.py``); every cell still runs.
* unset or ``default``: the settings a student runs, each notebook in about 3 minutes on 2 cores.
* ``full``: larger settings where a lesson trains something (falls back to ``default`` elsewhere).

Exercises are checked by ``check("01.2", answer)``. The expected answers are computed here,
independently of the notebook, from ``ddpm_ref`` itself (see ``lessons/course/answers_*.py``):
reading them is like reading the solutions at the back of a textbook.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ddpm_ref._checks import check_choice

__all__ = ["MODES", "lesson_mode", "pick", "demo_run_dir", "demo_model", "check", "grade", "hint",
           "exercise", "compare", "compare_function", "Exercise", "EXERCISES"]

MODES = ("quick", "default", "full")

#: Overrides where trained weights are cached (the tests point it at a temporary folder).
RUN_DIR_ENV = "DDPM_REF_LESSON_RUN_DIR"


def lesson_mode() -> str:
    """The preset named by ``DDPM_REF_LESSON_MODE``: "quick", "default" (when unset) or "full"."""
    mode = os.environ.get("DDPM_REF_LESSON_MODE", "").strip().lower() or "default"
    check_choice("DDPM_REF_LESSON_MODE", mode, MODES)
    return mode


def pick(*, quick, default, full=None):
    """The value for the current mode; ``full`` falls back to ``default`` when not given.

    >>> pick(quick=100, default=10_000)   # 10_000 unless DDPM_REF_LESSON_MODE=quick
    """
    mode = lesson_mode()
    if mode == "quick":
        return quick
    if mode == "full" and full is not None:
        return full
    return default


def demo_run_dir() -> Path:
    """The run directory every lesson agrees on for trained weights.

    ``$DDPM_REF_LESSON_RUN_DIR`` if set; otherwise the repository's ``runs/demo`` (the folder
    ``ddpm-ref demo`` writes when run from the repository root), found from the notebook's folder
    ``lessons/``. In quick mode the tiny model goes to ``runs/demo_quick`` instead, so that it
    never stands in for the real demo model.
    """
    override = os.environ.get(RUN_DIR_ENV)
    if override:
        return Path(override).resolve()
    here = Path.cwd().resolve()
    root = here.parent if here.name == "lessons" else here
    name = "demo_quick" if lesson_mode() == "quick" else "demo"
    return root / "runs" / name


def demo_model(progress: bool = True):
    """``(model, which)``: the trained model the lessons on sampling use, and "demo" or "tiny".

    * ``full``: the demo model (``ddpm-ref demo``'s class-conditional U-Net on the digits), trained
      now into ``demo_run_dir()`` if it is not there yet (4-7 minutes on 2 cores).
    * ``default``: the demo model if its checkpoint exists; otherwise the tiny quick model
      (about 15 s to train), so that the lesson stays within its time budget, with a note on how
      to get the real one.
    * ``quick``: always the tiny model, in its own folder (``runs/demo_quick`` or the override).
    """
    from ddpm_ref.runs import CHECKPOINT_NAME
    from ddpm_ref.train import load_or_train_demo

    mode, run_dir = lesson_mode(), demo_run_dir()
    if mode == "quick":
        return load_or_train_demo(str(run_dir), quick=True, progress=False), "tiny"
    if mode == "full" or (run_dir / CHECKPOINT_NAME).is_file():
        return load_or_train_demo(str(run_dir), quick=False, progress=progress), "demo"
    quick_dir = run_dir.parent / (run_dir.name + "_quick")
    print(f"No trained demo model in {run_dir}. Using the tiny quick model instead (trained once into "
          f"{quick_dir}, about 15 s): its samples are rough.\nFor the real one run `ddpm-ref demo` in the "
          "repository's root (4-7 minutes), or set DDPM_REF_LESSON_MODE=full.")
    return load_or_train_demo(str(quick_dir), quick=True, progress=progress), "tiny"


# --------------------------------------------------------------------------------------------
# Exercise checks
# --------------------------------------------------------------------------------------------

@dataclass
class Exercise:
    """One exercise: its checker, a right answer, plausible wrong answers, and tiered hints.

    * ``checker(answer) -> (ok, message)``: the message says what is wrong (a shape, an off-by-one
      t, β where β̃ belongs, ...), never the formula itself.
    * ``solution()`` returns an answer that passes (the tests feed it to the checker).
    * ``wrong``: ``{"what the mistake is": function returning that wrong answer}``; the tests
      feed each one and require the checker to reject it (so a checker that accepts anything fails).
    * ``hints``: tier 1 a nudge, tier 2 the equation; ``hint(ex_id)`` gives one more tier per
      call, and after the last tier the solution's source code.
    """

    checker: Callable
    solution: Callable
    wrong: dict = field(default_factory=dict)
    hints: tuple = ()
    hints_given: int = 0


#: exercise id -> Exercise
EXERCISES: dict[str, Exercise] = {}


def exercise(ex_id: str, solution, *, wrong: dict | None = None, hints: tuple | list = ()):
    """Register the decorated checker for exercise ``ex_id`` (see ``Exercise``)."""
    def register(checker):
        EXERCISES[ex_id] = Exercise(checker, solution, dict(wrong or {}), tuple(hints))
        return checker
    return register


def _get(ex_id: str) -> Exercise:
    _load_answers()
    if ex_id not in EXERCISES:
        raise ValueError(f"unknown exercise {ex_id!r}; known: {', '.join(sorted(EXERCISES))}")
    return EXERCISES[ex_id]


def grade(ex_id: str, answer) -> tuple[bool | None, str]:
    """(verdict, message) for the student's ``answer`` to exercise ``ex_id``, printing nothing.

    The verdict is None when the answer is still ``...`` (or None): not answered yet.
    """
    ex = _get(ex_id)
    if answer is Ellipsis or answer is None:
        return None, "not answered yet (replace the ... with your answer and run the cell again)."
    try:
        ok, message = ex.checker(answer)
    except Exception as err:  # a student's function may raise anything; report it, do not crash
        ok, message = False, f"your answer raised {type(err).__name__}: {err}"
    return (None if ok is None else bool(ok)), message


def check(ex_id: str, answer) -> None:
    """Print whether the student's ``answer`` to exercise ``ex_id`` is right.

    An answer left as ``...`` prints "not answered yet" and raises nothing, so that a notebook
    runs top to bottom before its exercises are done. A wrong answer gets what is wrong with it,
    and a pointer to ``hint(ex_id)``.
    """
    ok, message = grade(ex_id, answer)
    if ok is None:
        print(f"Exercise {ex_id}: {message}")
    elif ok:
        print(f"Exercise {ex_id}: correct! {message}".rstrip())
    else:
        more = f" (stuck? hint({ex_id!r}) gives a nudge)" if _get(ex_id).hints else ""
        print(f"Exercise {ex_id}: not yet. {message}{more}".rstrip())


def hint(ex_id: str) -> None:
    """Print the next tier of help for exercise ``ex_id``: a nudge, then the equation, then the
    solution (its source code). Each call gives one more tier."""
    import inspect

    ex = _get(ex_id)
    tiers = list(ex.hints)
    if ex.hints_given < len(tiers):
        ex.hints_given += 1
        print(f"Hint {ex.hints_given} of {len(tiers) + 1} for exercise {ex_id}: {tiers[ex.hints_given - 1]}")
        return
    target = ex.solution
    if getattr(target, "__name__", "") == "<lambda>":   # solution=lambda: fn — show fn itself
        value = target()
        target = value if callable(value) else target
    try:
        source = inspect.getsource(target)
    except (OSError, TypeError):
        source = repr(ex.solution())
    print(f"The solution to exercise {ex_id} (from lessons/course/):\n{source}")


def compare(answer, expected, *, rtol: float = 1e-6, atol: float = 1e-9, hint: str = "", mistakes=None):
    """(ok, message) for a number or array answer against the expected one (allclose).

    ``mistakes``: ``{"description": value}`` of known wrong answers; an answer that matches one
    is told which mistake it looks like.
    """
    import numpy as np

    try:
        a = np.asarray(answer, dtype=np.float64)
    except (TypeError, ValueError):
        return False, f"expected a number or an array of numbers, got {type(answer).__name__}. {hint}".rstrip()
    e = np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape:
        return False, f"expected shape {e.shape}, got {a.shape}. {hint}".rstrip()
    if np.allclose(a, e, rtol=rtol, atol=atol):
        return True, ""
    for what, value in (mistakes or {}).items():
        v = np.asarray(value, dtype=np.float64)
        if v.shape == a.shape and np.allclose(a, v, rtol=rtol, atol=atol):
            return False, f"this looks like {what}. {hint}".rstrip()
    if e.ndim == 0:
        side = "too large" if a > e else "too small"
        return False, f"{float(a):.6g} is {side}. {hint}".rstrip()
    worst = float(np.max(np.abs(a - e)))
    return False, f"largest difference from the expected values: {worst:.3g}. {hint}".rstrip()


def compare_function(student_fn, reference_fn, inputs, *, rtol=1e-6, atol=1e-9, hint="", mistakes=None):
    """(ok, message): call ``student_fn(*args)`` and ``reference_fn(*args)`` for each args tuple.

    ``mistakes``: ``{"description": wrong_fn}``; when the student's result equals a wrong
    function's on some input, the message names that mistake.
    """
    if not callable(student_fn):
        return False, f"expected a function, got {type(student_fn).__name__}. {hint}".rstrip()
    for args in inputs:
        result = student_fn(*args)
        if result is None:   # the body is still `...` (or lacks a return): not answered yet
            return None, "not answered yet: your function returned None (write its body and return the result)."
        known = {}
        for what, fn in (mistakes or {}).items():
            try:
                known[what] = fn(*args)
            except Exception:  # a known mistake that cannot run on this input names nothing
                pass
        ok, message = compare(result, reference_fn(*args), rtol=rtol, atol=atol, hint=hint, mistakes=known)
        if not ok:
            return False, message
    return True, f"(agrees with ddpm_ref on {len(inputs)} inputs)"


def _load_answers() -> None:
    """Import the modules that register the checkers (Python imports each once)."""
    import importlib

    for name in ANSWER_MODULES:
        importlib.import_module(f"course.{name}")


#: The modules of checkers, by the lessons they serve.
ANSWER_MODULES = ("answers_math", "answers_nn", "answers_kernels", "answers_train", "answers_beyond", "answers_beyond2")
