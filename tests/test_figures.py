"""``ddpm-ref figures``: deterministic pixels, --only / --list, and a complete figures/README.md."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as mpimg

from ddpm_ref import plots
from ddpm_ref.cli import main

README = Path(__file__).resolve().parents[1] / "figures" / "README.md"
SEEDED = "noised_photo"         # a cheap figure that draws random numbers from the seed


def _pixels(path: Path) -> np.ndarray:
    return mpimg.imread(path)


def test_same_seed_gives_same_pixels(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert main(["figures", "--only", SEEDED, "--out", str(a)]) == 0
    assert main(["figures", "--only", SEEDED, "--out", str(b)]) == 0
    assert main(["figures", "--only", SEEDED, "--out", str(c), "--seed", "1"]) == 0
    pa, pb, pc = (_pixels(d / f"{SEEDED}.png") for d in (a, b, c))
    assert pa.shape == pb.shape and pa.shape[0] > 100
    np.testing.assert_array_equal(pa, pb)
    assert pa.shape != pc.shape or not np.array_equal(pa, pc), "another seed should give other noise"


def test_user_style_does_not_change_pixels(tmp_path):
    import matplotlib

    assert main(["figures", "--only", "posterior_variance_ratio", "--out", str(tmp_path / "a")]) == 0
    with matplotlib.rc_context({"lines.linewidth": 5.0, "font.size": 20, "axes.prop_cycle":
                                matplotlib.cycler(color=["k"])}):
        assert main(["figures", "--only", "posterior_variance_ratio", "--out", str(tmp_path / "b")]) == 0
    np.testing.assert_array_equal(_pixels(tmp_path / "a" / "posterior_variance_ratio.png"),
                                  _pixels(tmp_path / "b" / "posterior_variance_ratio.png"))


def test_unknown_name_exits_2_and_lists_valid_names(tmp_path, capsys):
    assert main(["figures", "--only", "no_such_figure", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no_such_figure" in err
    for name in plots.names():
        assert name in err
    assert not any(tmp_path.iterdir())


def test_list_prints_every_figure(capsys):
    assert main(["figures", "--list"]) == 0
    out = capsys.readouterr().out
    for name in plots.names():
        assert re.search(rf"^{re.escape(name)}\s", out, re.M), name


def test_every_figure_has_description_lessons_and_readme_row():
    rows = {m.group(1) for m in re.finditer(r"^\|\s*`([^`]+)\.png`\s*\|", README.read_text(), re.M)}
    figures = plots.available()
    assert len(figures) >= 8
    for name, spec in figures.items():
        assert spec.description.strip(), name
        assert spec.lessons and all(re.fullmatch(r"\d\d", lesson) for lesson in spec.lessons), name
        assert name in rows, f"figures/README.md has no row for {name}.png"


def test_demo_figure_without_checkpoint_is_skipped_with_instructions(tmp_path, capsys):
    calls = []

    @plots.register("_test_needs_demo", "test only", lessons=("08",), needs="demo")
    def _maker(out_dir, seed, run_dir):
        calls.append(run_dir)
        return []

    try:
        with pytest.raises(plots.FigureUnavailable, match="ddpm-ref demo"):
            plots.make("_test_needs_demo", tmp_path, run_dir=tmp_path / "nothing")
        code = main(["figures", "--only", "_test_needs_demo", "--out", str(tmp_path),
                     "--run-dir", str(tmp_path / "nothing")])
        assert code == 1 and "skipped _test_needs_demo" in capsys.readouterr().out
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "checkpoint.npz").write_bytes(b"")
        assert plots.make("_test_needs_demo", tmp_path, run_dir=tmp_path / "run") == []
        assert calls == [tmp_path / "run"]
    finally:
        plots._REGISTRY.pop("_test_needs_demo", None)


def test_register_rejects_duplicates_and_bad_needs():
    spec = plots.available()["schedules"]
    with pytest.raises(ValueError, match="registered twice"):
        plots.register("schedules", "x", lessons=("02",))(lambda out_dir, seed: [])
    assert plots.available()["schedules"] is spec
    with pytest.raises(ValueError, match="needs"):
        plots.register("_x", "x", lessons=("02",), needs="gpu")


def test_committed_figures_are_what_figures_draws_today(tmp_path):
    """Every cheap figure (not needing the trained demo run) is regenerated and compared with the
    PNG committed in figures/, so a figure whose code changed without `ddpm-ref figures` being run
    fails here. The comparison allows anti-aliasing noise from another matplotlib build (a pixel
    may differ by up to 2/255, or a few in 10,000 by more); a changed curve, label or colour moves
    far more pixels than that."""
    committed = README.parent
    cheap = [s.name for s in plots.available().values() if s.needs is None]
    assert cheap
    try:                                  # the emulator's figure needs g++ (present in CI)
        from kernels.emulator import find_compiler

        find_compiler()
    except Exception:
        cheap.remove("emulator_check")
    assert main(["figures", "--out", str(tmp_path), *sum((["--only", n] for n in cheap), [])]) == 0
    stale = []
    for png in sorted(tmp_path.glob("*.png")):
        old = committed / png.name
        if not old.is_file():
            stale.append(f"{png.name}: not committed")
            continue
        a, b = _pixels(png), _pixels(old)
        if a.shape != b.shape:
            stale.append(f"{png.name}: size {b.shape[:2]} committed, {a.shape[:2]} drawn today")
            continue
        moved = float((np.abs(a - b).max(axis=-1) > 2 / 255).mean())
        if moved > 5e-4:
            stale.append(f"{png.name}: {100 * moved:.2f} % of the pixels differ")
    assert not stale, "stale figures (run `ddpm-ref figures` and commit figures/): " + "; ".join(stale)
