"""``python lessons/publish.py``: an instructor's one command that executes the lessons and writes HTML."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "lessons" / "publish.py"


def _run(*args, cwd=None):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, timeout=600)


@pytest.mark.slow
def test_publish_one_lesson_with_outputs(tmp_path):
    out = tmp_path / "site"
    r = _run("--out", str(out), "--only", "05", "--mode", "quick", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    page = out / "05_timestep_encoding.html"
    text = page.read_text(encoding="utf-8")
    assert text.count("data:image/png;base64") >= 1, "the executed cells' figures are embedded"
    assert "Exercise 05." in text, "the check cells ran and printed"
    assert 'src="figures/timestep_embedding.png"' in text and (out / "figures" / "timestep_embedding.png").is_file()
    index = (out / "index.html").read_text(encoding="utf-8")
    assert "05_timestep_encoding.html" in index and "01_" not in index
    assert not list((ROOT / "lessons").glob("*.html")), "nothing is written beside the lessons"


def test_publish_bad_arguments_one_line_exit_2(tmp_path):
    r = _run("--out", str(tmp_path), "--only", "99")
    assert r.returncode == 2 and "--only 99" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    afile = tmp_path / "a_file"
    afile.write_text("x")
    r = _run("--out", str(afile))
    assert r.returncode == 2 and "is not a folder" in r.stderr and "Traceback" not in r.stderr
