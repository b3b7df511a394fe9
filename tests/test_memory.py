"""ddpm_ref.memory: the estimate of a training step's memory is close to what a step takes, and a
size that cannot fit is refused with the estimate."""

import tracemalloc

import numpy as np
import pytest

from ddpm_ref.memory import check_fits, format_bytes, measure_step_bytes
from ddpm_ref.runs import build_model


def test_step_estimate_extrapolates_to_a_large_batch():
    model = build_model("mlp", dict(dim=2, hidden=64, depth=2, emb_dim=16, num_classes=None, dtype="float32"))
    fixed, per_example = measure_step_bytes(model, (2,))
    x = np.random.default_rng(0).standard_normal((4096, 2)).astype(np.float32)
    tracemalloc.start()
    try:
        out = model.forward(x, np.ones(4096, dtype=np.int64), None, keep_cache=True)
        model.backward(np.ones_like(out))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert 0.7 * peak < fixed + 4096 * per_example < 1.5 * peak, (fixed, per_example, peak)


def test_check_fits_says_how_much():
    check_fits("a small thing", 10, available=100)
    with pytest.raises(ValueError, match=r"--batch-size 7 needs about 3\.0 GB of memory; about 1\.0 GB"):
        check_fits("--batch-size 7", 3e9, available=10 ** 9)
    assert format_bytes(1536) == "1.5 kB" and format_bytes(12) == "12 B"
