/*
Kernels for the forward pass of single-head scaled dot-product attention (ddpm_ref/nn/attention.py):

    S = scale * q k^T          (scale = 1/sqrt(D))
    P = softmax(S) over the keys (each row of P sums to 1)
    o = P v

Shapes, float32, C-contiguous: q, k, v, o (B, L, D): B sequences of L tokens with D features.
The caller passes scale as a float32.

Run it on a CPU (validates against the NumPy reference, then times it):
python -m kernels attention_forward 1
On an NVIDIA GPU:
python -m kernels attention_forward 1 --backend cuda
Compile check: python -m kernels.nvrtc_check attention_forward.cu

version 1 is a direct port of the three NumPy lines, as three kernels: one thread per score
S[b,i,j], then one thread per row of the softmax (max, sum of exponentials, divide), then one
thread per output element o[b,i,d]. It writes the (B, L, L) matrix P to global memory, and the
backward pass (attention_backward.cu version 1) reads it from there.

version 2 is one kernel and never stores S or P ("FlashAttention"): a block of T threads owns T
query rows (thread t, row i) and walks over the keys in tiles of T rows, loading each K and V
tile into shared memory once for all T queries. Each thread keeps, for its row,
    m = the largest score seen so far,  l = sum_j exp(S_ij - m),  acc = sum_j exp(S_ij - m) v_j
and, when a tile brings a larger maximum m', multiplies l and acc by exp(m - m') before adding
the tile's terms: an "online" softmax that never exponentiates anything above 0 (no overflow).
At the end o_i = acc / l, and the kernel also saves logsumexp_i = m + log(l), from which the
backward pass recomputes P_ij = exp(S_ij - logsumexp_i) without storing P.
Shared memory: (4*T*(D+1) + T*(T+1)) floats, a dynamic size (shared_mem argument of the launch).
Rows are padded to D+1 floats so that thread t reading element d of its own row (address
t*(D+1) + d) hits a different bank from thread t+1.

GPU timings: not measured yet (kernels/RESULTS.md says how to measure them).
*/

#ifndef INFINITY
#define INFINITY __int_as_float(0x7f800000)
#endif

// ----------------------------------------------------------------------------
// version 1: three kernels, one thread per output element (per row for the softmax)

extern "C" __global__ void attention_scores_kernel1(const float* __restrict__ q, const float* __restrict__ k,
                                                    float* __restrict__ s, int B, int L, int D, float scale) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= B * L * L) { return; }
    int j = idx % L;                 // key
    int i = (idx / L) % L;           // query
    int b = idx / (L * L);
    float acc = 0.0f;
    for (int d = 0; d < D; d++) {
        acc += q[(b * L + i) * D + d] * k[(b * L + j) * D + d];
    }
    s[idx] = acc * scale;
}

extern "C" __global__ void attention_softmax_kernel1(const float* __restrict__ s, float* __restrict__ p,
                                                     int B, int L) {
    int row = blockIdx.x * blockDim.x + threadIdx.x;   // row = b*L + i
    if (row >= B * L) { return; }
    const float* s_row = s + row * L;
    float* p_row = p + row * L;
    float maxval = -INFINITY;                          // subtracting the max keeps exp() <= 1
    for (int j = 0; j < L; j++) { maxval = fmaxf(maxval, s_row[j]); }
    float sum = 0.0f;
    for (int j = 0; j < L; j++) {
        p_row[j] = expf(s_row[j] - maxval);
        sum += p_row[j];
    }
    for (int j = 0; j < L; j++) { p_row[j] /= sum; }
}

extern "C" __global__ void attention_value_kernel1(const float* __restrict__ p, const float* __restrict__ v,
                                                   float* __restrict__ o, int B, int L, int D) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= B * L * D) { return; }
    int d = idx % D;
    int i = (idx / D) % L;
    int b = idx / (D * L);
    float acc = 0.0f;
    for (int j = 0; j < L; j++) {
        acc += p[(b * L + i) * L + j] * v[(b * L + j) * D + d];
    }
    o[idx] = acc;
}

// ----------------------------------------------------------------------------
// version 2: one block per tile of T queries, online softmax, K/V tiles in shared memory

// Launch with block (T), grid (ceil(L / T), B), shared_mem (4*T*(D+1) + T*(T+1)) * 4 bytes.
extern "C" __global__ void attention_forward_kernel2(const float* __restrict__ q, const float* __restrict__ k,
                                                     const float* __restrict__ v, float* __restrict__ o,
                                                     float* __restrict__ lse, int B, int L, int D, float scale) {
    extern __shared__ float smem[];
    const int T = blockDim.x;
    const int Dp = D + 1;                  // padded row length (see the bank note at the top)
    float* q_s = smem;                     // [T][Dp] this block's query rows
    float* acc_s = q_s + T * Dp;           // [T][Dp] each row's running sum_j exp(S_ij - m) v_j
    float* k_s = acc_s + T * Dp;           // [T][Dp] the current tile of keys
    float* v_s = k_s + T * Dp;             // [T][Dp] ... and of values
    float* s_s = v_s + T * Dp;             // [T][T+1] scores of the block's queries against the tile
    const int b = blockIdx.y;
    const int t = threadIdx.x;
    const int i0 = blockIdx.x * T;         // the block's first query row
    const bool active = i0 + t < L;        // threads past the last row still help load tiles

    // Cooperative loads: consecutive threads read consecutive floats of global memory (coalesced).
    for (int idx = t; idx < T * D; idx += T) {
        int row = idx / D, d = idx % D;
        q_s[row * Dp + d] = (i0 + row < L) ? q[(b * L + i0 + row) * D + d] : 0.0f;
        acc_s[row * Dp + d] = 0.0f;
    }
    float m = -INFINITY;                   // this row's running maximum score
    float l = 0.0f;                        // this row's running sum_j exp(S_ij - m)

    for (int j0 = 0; j0 < L; j0 += T) {
        __syncthreads();                   // everyone is done with the previous tile
        for (int idx = t; idx < T * D; idx += T) {
            int row = idx / D, d = idx % D;
            bool valid = j0 + row < L;
            k_s[row * Dp + d] = valid ? k[(b * L + j0 + row) * D + d] : 0.0f;
            v_s[row * Dp + d] = valid ? v[(b * L + j0 + row) * D + d] : 0.0f;
        }
        __syncthreads();                   // the tile is loaded
        if (active) {
            const int nkeys = min(T, L - j0);
            float* my_s = s_s + t * (T + 1);
            float* my_acc = acc_s + t * Dp;
            const float* my_q = q_s + t * Dp;
            // 1. scores of this row against the tile, and their maximum
            float m_tile = -INFINITY;
            for (int jj = 0; jj < nkeys; jj++) {
                float dot = 0.0f;
                for (int d = 0; d < D; d++) { dot += my_q[d] * k_s[jj * Dp + d]; }
                my_s[jj] = dot * scale;
                m_tile = fmaxf(m_tile, my_s[jj]);
            }
            // 2. rescale what was summed under the old maximum (exp(-inf) = 0 on the first tile)
            float m_new = fmaxf(m, m_tile);
            float correction = expf(m - m_new);
            l *= correction;
            for (int d = 0; d < D; d++) { my_acc[d] *= correction; }
            // 3. add this tile's terms
            for (int jj = 0; jj < nkeys; jj++) {
                float pj = expf(my_s[jj] - m_new);
                l += pj;
                for (int d = 0; d < D; d++) { my_acc[d] += pj * v_s[jj * Dp + d]; }
            }
            m = m_new;
        }
    }
    if (active) {
        for (int d = 0; d < D; d++) { acc_s[t * Dp + d] /= l; }   // o_i = acc / l
        lse[b * L + i0 + t] = m + logf(l);
    }
    __syncthreads();                       // all rows normalised: write them out, coalesced
    for (int idx = t; idx < T * D; idx += T) {
        int row = idx / D, d = idx % D;
        if (i0 + row < L) { o[(b * L + i0 + row) * D + d] = acc_s[row * Dp + d]; }
    }
}
