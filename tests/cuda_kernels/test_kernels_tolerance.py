"""The validation tolerance (kernels/harness.py: C_TOL * eps32 * M, M from the sizes of the terms)
passes correct kernels and fails planted bugs, at the U-Net's real shapes.

Each planted bug is a one-line change of a real kernel file, built in the emulator: a dropped
filter tap, a dropped last column, a dropped last pixel of the sum over pixels, a softmax scale
0.1% off, and, at cross-attention shapes (B, Lq, Lk, D), a length mixed up: the query count Lq
where the key count Lk belongs, or the reverse (invisible at self-attention shapes, Lq = Lk).
They are the kind of error a flat tolerance either hides (when the outputs are small) or drowns in
false alarms (when it is tight enough to see them).
"""

import numpy as np
import pytest

from kernels import harness, load_module, source_path
from kernels.emulator import EmulatedModule

# op, version, shape (N, C, H, W, K, R, stride, pad) or (B, L, D) from the demo U-Net, or
# (B, Lq, Lk, D) for cross-attention, the text to replace in the op's .cu file, and its buggy replacement
PLANTED = {
    "conv_fwd_v2_drops_last_tap": ("conv2d_forward", 2, (1, 64, 8, 8, 32, 3, 1, 1),
                                   "(k < K && e0 + tx < CRS)", "(k < K && e0 + tx < CRS - 1)"),
    "conv_fwd_v1_drops_last_column": ("conv2d_forward", 1, (1, 128, 4, 4, 64, 3, 1, 1),
                                      "if (ww < 0 || ww >= W) { continue; }      // a column",
                                      "if (ww < 0 || ww >= W - 1) { continue; }      // a column"),
    "conv_fwd_v3_drops_last_tap": ("conv2d_forward", 3, (1, 128, 4, 4, 64, 3, 1, 1),
                                   "(k < K && e < CRS) ? w[k * CRS + e]", "(k < K && e < CRS - 1) ? w[k * CRS + e]"),
    "conv_dw_v3_drops_last_pixel_of_a_slice": ("conv2d_backward_weight", 3, (1, 32, 8, 8, 32, 3, 1, 1),
                                               "const int j_end = min(NPQ, j_begin + chunk);",
                                               "const int j_end = min(NPQ - 1, j_begin + chunk);"),
    "attn_dkdv_v3_scale_off_by_0.1%": ("attention_backward", 3, (1, 16, 64),
                                       "ds_s[(row0 + rr) * (bq + 1) + ii] = p * (dp - delta_s[ii]) * scale;",
                                       "ds_s[(row0 + rr) * (bq + 1) + ii] = p * (dp - delta_s[ii]) * scale * 1.001f;"),
    "conv_dw_v2_drops_last_pixel": ("conv2d_backward_weight", 2, (1, 32, 8, 8, 32, 3, 1, 1),
                                    "(k < K && j < NPQ)", "(k < K && j < NPQ - 1)"),
    "conv_db_v2_drops_last_pixel": ("conv2d_backward_weight", 2, (1, 32, 8, 8, 32, 3, 1, 1),
                                    "for (int j = t; j < N * PQ; j += blockDim.x)",
                                    "for (int j = t; j < N * PQ - 1; j += blockDim.x)"),
    "conv_dx_v2_drops_last_row": ("conv2d_backward_data", 2, (1, 64, 8, 8, 32, 3, 1, 1),
                                  "if (p >= P || q >= Q)", "if (p >= P - 1 || q >= Q)"),
    "attn_fwd_v2_scale_off_by_0.1%": ("attention_forward", 2, (1, 16, 64),
                                      "my_s[jj] = dot * scale;", "my_s[jj] = dot * scale * 1.001f;"),
    "attn_bwd_v2_dq_scale_off_by_0.1%": ("attention_backward", 2, (1, 16, 64),
                                         "float ds = p * (dp - my_delta) * scale;",
                                         "float ds = p * (dp - my_delta) * scale * 1.001f;"),
    # cross-attention: Lq where Lk belongs. 7 queries, 9 keys in one tile of 16: keys 7 and 8 dropped
    "attn_fwd_v3_key_tile_ends_at_Lq": ("attention_forward", 3, (2, 7, 9, 8),
                                        "const int nk = min(bkv, Lk - j0);", "const int nk = min(bkv, Lq - j0);"),
    # ... the keys of sequence b read at row b*Lq (within the array: Lq < Lk), i.e. sequence 1 reads sequence 0's
    "attn_scores_v1_key_rows_at_b_times_Lq": ("attention_forward", 1, (2, 3, 7, 5),
                                              "* k[(b * Lk + j) * D + d];", "* k[(b * Lq + j) * D + d];"),
    # ... and Lk where Lq belongs: the U-Net's 16 pixels and 4 tokens, dk/dv summed over 4 queries of 16
    "attn_dkdv_v2_query_loop_ends_at_Lk": ("attention_backward", 2, (2, 16, 4, 32),
                                           "for (int i0 = 0; i0 < Lq; i0 += T) {",
                                           "for (int i0 = 0; i0 < Lk; i0 += T) {"),
}


def _modules(op, code=None):
    def modules(name):
        if name == op and code is not None:
            return EmulatedModule(code=code, name=source_path(op).name, sanitize=None)
        return load_module("emulate", name, None)
    return modules


@pytest.mark.parametrize("bug", list(PLANTED))
def test_planted_bug_fails_and_the_correct_kernel_passes(emulator, bug):
    op, version, shape, good, bad = PLANTED[bug]
    src = source_path(op).read_text()
    assert src.count(good) == 1, f"the text to plant the bug in is not (once) in {op}.cu: {good!r}"
    inp = harness.make_inputs(op, shape, np.random.default_rng(7))
    assert harness.validate(op, version, _modules(op), inp) == []
    out = harness.run(op, version, _modules(op, src.replace(good, bad)), inp)
    ref, tol = harness.reference(op, inp), harness.tolerance(op, inp)
    problems = [m for name in ref for m in harness.compare(name, out[name], ref[name], tol[name])]
    assert problems, f"{bug} was not caught"
    # how far above the tolerance: at least 4 C_TOL (measured: 7x for the 0.1% scale of dq, far more for the rest)
    assert harness.worst_ratio(op, out, inp) > 4 * harness.C_TOL


def test_tolerance_scales_with_the_terms():
    """M is the reference on magnitudes: doubling x doubles M of y, and M >= |y| always."""
    inp = harness.make_inputs("conv2d_forward", (1, 5, 6, 6, 3, 3, 1, 1), np.random.default_rng(0))
    m = harness.bounds("conv2d_forward", inp)["y"]
    y = harness.reference("conv2d_forward", inp)["y"]
    assert np.all(m >= np.abs(y) - 1e-12)
    zero_b = dict(inp, b=np.zeros_like(inp["b"]))
    twice = dict(zero_b, x=2 * inp["x"])
    np.testing.assert_allclose(harness.bounds("conv2d_forward", twice)["y"],
                               2 * harness.bounds("conv2d_forward", zero_b)["y"], rtol=1e-12)
    q = harness.make_inputs("attention_backward", (2, 9, 4), np.random.default_rng(1))
    ref, mq = harness.reference("attention_backward", q), harness.bounds("attention_backward", q)
    for name in ("dq", "dk", "dv"):
        assert np.all(mq[name] >= np.abs(ref[name]))
