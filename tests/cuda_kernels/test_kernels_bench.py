"""The GPU benchmark's table writing (runs without a GPU; the timing itself needs one)."""

import pytest

from kernels import bench_gpu


def test_results_table_replaces_only_its_section(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text(f"# Results\nintro\n{bench_gpu.BEGIN}\nold table\n{bench_gpu.END}\nafter\n")
    rows = [("conv2d_forward", 2, (1, 2, 3, 4, 5, 3, 1, 1), 0.5, 0.25, ""),
            ("conv2d_forward", 3, (1, 2, 3, 4, 5, 3, 1, 1), 0.2, 0.25, ""),
            ("attention_forward", 1, (2, 16, 8), None, None, "error: boom")]
    table = bench_gpu.render(rows, [("U-Net forward+backward, NumPy on the CPU", 128, 12.0)], "Test GPU", "v")
    bench_gpu.write_results(table, path)
    text = path.read_text()
    assert "old table" not in text and text.startswith("# Results\nintro\n") and text.endswith("after\n")
    assert "| conv2d_forward | 2 | 1x2x3x4x5x3x1x1 | 0.500 | 0.250 | 2.0x |  |  |" in text
    assert "| conv2d_forward | 3 | 1x2x3x4x5x3x1x1 | 0.200 | 0.250 | 0.8x | ~3x v2 (estimate) |  |" in text
    assert "| attention_forward | 1 | 2x16x8 | — | — | — |  | error: boom |" in text
    assert "Test GPU" in text and "| U-Net forward+backward, NumPy on the CPU | 128 | 12.000 |" in text


def test_without_a_gpu_nothing_is_written(tmp_path, capsys):
    from kernels.cuda_backend import cuda_available

    if cuda_available()[0]:
        pytest.skip("this machine has a GPU: bench_gpu would measure (see test_gpu_quick_run_writes_a_table)")
    out = tmp_path / "r.md"
    assert bench_gpu.main(["--out", str(out)]) == 2
    assert not out.exists() and "nothing measured" in capsys.readouterr().err


@pytest.mark.gpu
@pytest.mark.slow
def test_gpu_quick_run_writes_a_table(gpu, tmp_path):
    """On a GPU: one shape per op, every version validated and timed, the table written."""
    out = tmp_path / "r.md"
    out.write_text(f"x\n{bench_gpu.BEGIN}\nold\n{bench_gpu.END}\n")
    assert bench_gpu.main(["--quick", "--repeats", "3", "--batch", "8", "--out", str(out)]) == 0
    text = out.read_text()
    assert "old" not in text and "FAILED" not in text and "error:" not in text, text
    assert text.count("| conv2d_forward |") == len(bench_gpu.VERSIONS["conv2d_forward"])
