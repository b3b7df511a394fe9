"""`python -m kernels.gpu_day`, the one command for the GPU day: its plan and its parts that need no GPU."""

import pytest

from kernels import OPS, VERSIONS, gpu_day
from kernels.cuda_backend import cuda_available


@pytest.fixture(scope="module")
def plan():
    return gpu_day.build_plan(600)


def test_plan_covers_every_version_at_the_unets_shapes(plan):
    cases = {(op, v) for op, v, _, _ in plan.validate}
    assert cases == {(op, v) for op in OPS for v in VERSIONS[op]}
    shapes = {s for op, _, s, _ in plan.validate if op == "conv2d_forward"}
    assert (128, 128, 4, 4, 64, 3, 1, 1) in shapes and (128, 64, 5, 5, 64, 2, 1, 0) in shapes  # demo net, batch 128
    assert (32, 64, 128) in {s for op, _, s, _ in plan.validate if op == "attention_forward"}  # wider net
    for op in ("attention_forward", "attention_backward"):     # cross-attention: Lq = 16 pixels, Lk = 4 tokens
        assert {(op, v) for op_, v, s, _ in plan.validate if op_ == op and s == (128, 16, 4, 32)} == \
            {(op, v) for v in VERSIONS[op]}


def test_plan_tries_only_tiles_that_fit(plan):
    assert gpu_day._check_plan_fits(plan) == []
    for op, v, shape, sizes in plan.validate:
        assert sizes, (op, v, shape)
        if op == "attention_backward" and v == 2 and shape[2] >= 64:
            assert 32 not in sizes and 64 not in sizes          # 50,176 bytes and more: over 48 KiB


def test_plan_prints_without_a_gpu(capsys):
    assert gpu_day.main(["--plan"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("kernels.gpu_day plan (budget 600 s):")
    assert "conv2d_backward_weight v2 128x128x4x4x64x3x1x1" in out and "4. write kernels/RESULTS.md" in out


def test_sanitizer_runs_every_tool_on_the_child():
    argv = gpu_day.sanitizer_argv("racecheck", "/opt/cuda/bin/compute-sanitizer")
    assert argv[:3] == ["/opt/cuda/bin/compute-sanitizer", "--tool", "racecheck"]
    assert argv[-3:] == ["-m", "kernels.gpu_day", "--child-validate"]
    assert set(gpu_day.SANITIZER_TOOLS) == {"memcheck", "racecheck", "synccheck", "initcheck"}
    assert abs(sum(gpu_day.BUDGET_SHARE.values()) - 1) < 1e-12


def test_without_a_gpu_one_clear_line_and_nothing_written(tmp_path, capsys):
    if cuda_available()[0]:
        pytest.skip("this machine has a GPU: gpu_day would run")
    out = tmp_path / "RESULTS.md"
    assert gpu_day.main(["--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("kernels.gpu_day: no GPU (") and "nothing was run" in err
    assert not out.exists()


def test_results_section_lists_failures_and_sanitizers(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text(f"# R\n{gpu_day.BEGIN}\nold\n{gpu_day.END}\ntail\n")
    validation = [("conv2d_forward", 2, (1, 3, 5, 5, 4, 3, 1, 1), None, "ok"),
                  ("attention_forward", 1, (2, 16, 8), 64, "MISMATCH: o(0, 1, 2): got 1.0, expected 2.0")]
    gpu_day.write_section(gpu_day.render(validation, [("memcheck", "clean")], "Test GPU"), path)
    text = path.read_text()
    assert "old" not in text and text.startswith("# R\n") and text.endswith("tail\n")
    assert "1 of 2 validation runs passed" in text
    assert "| attention_forward | 1 | 2x16x8 | 64 | MISMATCH: o(0, 1, 2): got 1.0, expected 2.0 |" in text
    assert "| memcheck | clean |" in text
