/*
Kernels for the forward pass of single-head scaled dot-product attention (ddpm_ref/nn/attention.py):

    S = scale * q k^T          (scale = 1/sqrt(D))
    P = softmax(S) over the keys (each row of P sums to 1)
    o = P v

Shapes, float32, C-contiguous: q and o (B, Lq, D), k and v (B, Lk, D): B sequences, Lq queries
and Lk keys (one value per key), D features; S and P are (B, Lq, Lk). Self-attention has
Lq = Lk (the U-Net's pixels); cross-attention has Lq image tokens and Lk context tokens
(ddpm_ref/nn/cross_attention.py calls these kernels through the ops object, one head per batch
entry). Every kernel takes both lengths: the queries decide the grid, the keys the inner loops.
The caller passes scale as a float32.

Run it on a CPU (validates against the NumPy reference, then times it):
python -m kernels attention_forward 1
On an NVIDIA GPU:
python -m kernels attention_forward 1 --backend cuda
Compile check: python -m kernels.nvrtc_check attention_forward.cu

version 1 is a direct port of the three NumPy lines, as three kernels: one thread per score
S[b,i,j], then one thread per row of the softmax (max, sum of exponentials, divide), then one
thread per output element o[b,i,d]. It writes the (B, Lq, Lk) matrix P to global memory, and the
backward pass (attention_backward.cu version 1) reads it from there.

version 2 is one kernel and never stores S or P ("FlashAttention"): a block of T threads owns T
query rows (thread t, row i; ceil(Lq / T) blocks per sequence) and walks over the Lk keys in tiles
of T rows, loading each K and V
tile into shared memory once for all T queries. Each thread keeps, for its row,
    m = the largest score seen so far,  l = sum_j exp(S_ij - m),  acc = sum_j exp(S_ij - m) v_j
and, when a tile brings a larger maximum m', multiplies l and acc by exp(m - m') before adding
the tile's terms: an "online" softmax that never exponentiates anything above 0 (no overflow).
At the end o_i = acc / l, and the kernel also saves logsumexp_i = m + log(l), from which the
backward pass recomputes P_ij = exp(S_ij - logsumexp_i) without storing P.
Shared memory: (4*T*(D+1) + T*(T+1)) floats, a dynamic size (shared_mem argument of the launch).
Rows are padded to D+1 floats so that thread t reading element d of its own row (address
t*(D+1) + d) hits a different bank from thread t+1.

version 3 is version 2's online softmax with blocks of 4 warps (128 threads) instead of one
thread per query row. A block owns 32 query rows, 8 per warp, and walks over the Lk keys in tiles
of BKV (32, or fewer when D is large or Lk short: kernels/launch.py picks the largest that fits
48 KiB and is not much longer than Lk). Each
tile is three steps, separated by __syncwarp():
  A. scores: the warp's 32 lanes compute the 8 x BKV scores of its rows against the tile (lane
     = key), and write them to shared memory;
  B. softmax update: lane r < 8 takes row r: the tile's maximum, the new running maximum m, the
     correction exp(m_old - m_new), the exponentials P_ij (written over the scores) and l;
  C. P v: lane d adds sum_j P_ij v_j[d] into its registers, for d = lane, lane + 32, ... (D <= 128:
     4 per lane), after multiplying them by the row's correction.
The block loads each K/V tile once for 32 queries (version 2: for T = 8-32), and every lane of a
warp works in steps A and C (version 2: one thread per row throughout).
  Expected gain (an ESTIMATE, not measured: no GPU has been lent). At D = 64 version 2 runs blocks
of T = 16 threads with 34 KiB of shared memory: 6 blocks, 96 threads per SM (5% occupancy), each
thread a serial dot product per key. Version 3 has 128 threads and 30 KiB per block: 7 blocks,
896 threads per SM, and K/V tiles reused by 32 queries instead of 16. At Lq = Lk >= 256 that is about
5-10x faster than version 2, still well below FlashAttention (no tensor cores, no register tiling
of Q K^T): an H100 does attention at (32, 256, 64) in ~0.05 ms with cuDNN; version 3 is
estimated at ~0.2-0.4 ms. Cross-attention with a few keys (Lk = 4 context tokens) is one short
key tile per block: the grid, ceil(Lq / 32) x B blocks, is what sets the speed there.

GPU timings: not measured yet (kernels/RESULTS.md says how to measure them).
*/

#ifndef INFINITY
#define INFINITY __int_as_float(0x7f800000)
#endif

// ----------------------------------------------------------------------------
// version 1: three kernels, one thread per output element (per row for the softmax)

extern "C" __global__ void attention_scores_kernel1(const float* __restrict__ q, const float* __restrict__ k,
                                                    float* __restrict__ s, int B, int Lq, int Lk, int D,
                                                    float scale) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;   // idx = (b*Lq + i)*Lk + j
    if (idx >= B * Lq * Lk) { return; }
    int j = idx % Lk;                // key
    int i = (idx / Lk) % Lq;         // query
    int b = idx / (Lq * Lk);
    float acc = 0.0f;
    for (int d = 0; d < D; d++) {
        acc += q[(b * Lq + i) * D + d] * k[(b * Lk + j) * D + d];
    }
    s[idx] = acc * scale;
}

extern "C" __global__ void attention_softmax_kernel1(const float* __restrict__ s, float* __restrict__ p,
                                                     int B, int Lq, int Lk) {
    int row = blockIdx.x * blockDim.x + threadIdx.x;   // row = b*Lq + i: one query, its Lk scores
    if (row >= B * Lq) { return; }
    const float* s_row = s + row * Lk;
    float* p_row = p + row * Lk;
    float maxval = -INFINITY;                          // subtracting the max keeps exp() <= 1
    for (int j = 0; j < Lk; j++) { maxval = fmaxf(maxval, s_row[j]); }
    float sum = 0.0f;
    for (int j = 0; j < Lk; j++) {
        p_row[j] = expf(s_row[j] - maxval);
        sum += p_row[j];
    }
    for (int j = 0; j < Lk; j++) { p_row[j] /= sum; }
}

extern "C" __global__ void attention_value_kernel1(const float* __restrict__ p, const float* __restrict__ v,
                                                   float* __restrict__ o, int B, int Lq, int Lk, int D) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;   // idx = (b*Lq + i)*D + d
    if (idx >= B * Lq * D) { return; }
    int d = idx % D;
    int i = (idx / D) % Lq;
    int b = idx / (D * Lq);
    float acc = 0.0f;
    for (int j = 0; j < Lk; j++) {
        acc += p[(b * Lq + i) * Lk + j] * v[(b * Lk + j) * D + d];
    }
    o[idx] = acc;
}

// ----------------------------------------------------------------------------
// version 2: one block per tile of T queries, online softmax, K/V tiles in shared memory

// Launch with block (T), grid (ceil(Lq / T), B), shared_mem (4*T*(D+1) + T*(T+1)) * 4 bytes.
extern "C" __global__ void attention_forward_kernel2(const float* __restrict__ q, const float* __restrict__ k,
                                                     const float* __restrict__ v, float* __restrict__ o,
                                                     float* __restrict__ lse, int B, int Lq, int Lk, int D,
                                                     float scale) {
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
    const bool active = i0 + t < Lq;       // threads past the last row still help load tiles

    // Cooperative loads: consecutive threads read consecutive floats of global memory (coalesced).
    for (int idx = t; idx < T * D; idx += T) {
        int row = idx / D, d = idx % D;
        q_s[row * Dp + d] = (i0 + row < Lq) ? q[(b * Lq + i0 + row) * D + d] : 0.0f;
        acc_s[row * Dp + d] = 0.0f;
    }
    float m = -INFINITY;                   // this row's running maximum score
    float l = 0.0f;                        // this row's running sum_j exp(S_ij - m)

    for (int j0 = 0; j0 < Lk; j0 += T) {   // tiles of T keys
        __syncthreads();                   // everyone is done with the previous tile
        for (int idx = t; idx < T * D; idx += T) {
            int row = idx / D, d = idx % D;
            bool valid = j0 + row < Lk;
            k_s[row * Dp + d] = valid ? k[(b * Lk + j0 + row) * D + d] : 0.0f;
            v_s[row * Dp + d] = valid ? v[(b * Lk + j0 + row) * D + d] : 0.0f;
        }
        __syncthreads();                   // the tile is loaded
        if (active) {
            const int nkeys = min(T, Lk - j0);
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
        lse[b * Lq + i0 + t] = m + logf(l);
    }
    __syncthreads();                       // all rows normalised: write them out, coalesced
    for (int idx = t; idx < T * D; idx += T) {
        int row = idx / D, d = idx % D;
        if (i0 + row < Lq) { o[(b * Lq + i0 + row) * D + d] = acc_s[row * Dp + d]; }
    }
}

// ----------------------------------------------------------------------------
// version 3: blocks of 4 warps, 8 query rows per warp, lanes over keys (scores) and features (P v)

#define V3_WARPS 4
#define V3_ROWS 8                              // query rows per warp
#define V3_BQ (V3_WARPS * V3_ROWS)             // query rows per block: 32
#define V3_MAXDD 4                             // features per lane: D <= 32 * V3_MAXDD = 128

// Launch with block (128), grid (ceil(Lq / 32), B), and shared_mem
// (V3_BQ*(D+1) + 2*bkv*(D+1) + V3_BQ*(bkv+1) + 3*V3_BQ) * 4 bytes, with bkv in 1..32 (the key tile).
extern "C" __global__ __launch_bounds__(128) void attention_forward_kernel3(
        const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
        float* __restrict__ o, float* __restrict__ lse, int B, int Lq, int Lk, int D, float scale, int bkv) {
    extern __shared__ float smem[];
    const int Dp = D + 1;
    float* q_s = smem;                         // [32][Dp] the block's query rows
    float* k_s = q_s + V3_BQ * Dp;             // [bkv][Dp] the current key tile
    float* v_s = k_s + bkv * Dp;               // [bkv][Dp] ... and value tile
    float* p_s = v_s + bkv * Dp;               // [32][bkv + 1] scores, then exponentials
    float* m_s = p_s + V3_BQ * (bkv + 1);      // [32] running maximum of each row
    float* l_s = m_s + V3_BQ;                  // [32] running sum of exponentials
    float* c_s = l_s + V3_BQ;                  // [32] this tile's correction exp(m_old - m_new)
    const int b = blockIdx.y;
    const int t = threadIdx.x;
    const int warp = t / 32, lane = t % 32;
    const int i0 = blockIdx.x * V3_BQ;
    const int row0 = warp * V3_ROWS;           // this warp's first row in the block

    for (int idx = t; idx < V3_BQ * D; idx += blockDim.x) {
        int r = idx / D, d = idx % D;
        q_s[r * Dp + d] = (i0 + r < Lq) ? q[(b * Lq + i0 + r) * D + d] : 0.0f;
    }
    if (t < V3_BQ) { m_s[t] = -INFINITY; l_s[t] = 0.0f; }
    float acc[V3_ROWS][V3_MAXDD];
    #pragma unroll
    for (int rr = 0; rr < V3_ROWS; rr++) {
        #pragma unroll
        for (int dd = 0; dd < V3_MAXDD; dd++) { acc[rr][dd] = 0.0f; }
    }

    for (int j0 = 0; j0 < Lk; j0 += bkv) {    // tiles of bkv keys
        __syncthreads();                       // everyone is done with the previous tile
        for (int idx = t; idx < bkv * D; idx += blockDim.x) {
            int r = idx / D, d = idx % D;
            bool valid = j0 + r < Lk;
            k_s[r * Dp + d] = valid ? k[(b * Lk + j0 + r) * D + d] : 0.0f;
            v_s[r * Dp + d] = valid ? v[(b * Lk + j0 + r) * D + d] : 0.0f;
        }
        __syncthreads();                       // the tile is loaded
        const int nk = min(bkv, Lk - j0);
        // A. scores of the warp's 8 rows against the tile's keys (lane -> (row, key) pairs)
        for (int idx = lane; idx < V3_ROWS * bkv; idx += 32) {
            int rr = idx / bkv, jj = idx % bkv;
            float dot = 0.0f;
            for (int d = 0; d < D; d++) { dot += q_s[(row0 + rr) * Dp + d] * k_s[jj * Dp + d]; }
            p_s[(row0 + rr) * (bkv + 1) + jj] = dot * scale;
        }
        __syncwarp();
        // B. online softmax update, one lane per row
        if (lane < V3_ROWS) {
            const int r = row0 + lane;
            float* row = p_s + r * (bkv + 1);
            float m_tile = -INFINITY;
            for (int jj = 0; jj < nk; jj++) { m_tile = fmaxf(m_tile, row[jj]); }
            float m_new = fmaxf(m_s[r], m_tile);
            float correction = expf(m_s[r] - m_new);      // exp(-inf) = 0 on the first tile
            float l = l_s[r] * correction;
            for (int jj = 0; jj < nk; jj++) {
                row[jj] = expf(row[jj] - m_new);
                l += row[jj];
            }
            m_s[r] = m_new;
            l_s[r] = l;
            c_s[r] = correction;
        }
        __syncwarp();
        // C. rescale and add P v: lane owns features lane, lane + 32, ...
        #pragma unroll
        for (int rr = 0; rr < V3_ROWS; rr++) {
            const int r = row0 + rr;
            const float correction = c_s[r];
            const float* row = p_s + r * (bkv + 1);
            #pragma unroll
            for (int dd = 0; dd < V3_MAXDD; dd++) { acc[rr][dd] *= correction; }
            for (int jj = 0; jj < nk; jj++) {
                const float pj = row[jj];
                #pragma unroll
                for (int dd = 0; dd < V3_MAXDD; dd++) {
                    int d = lane + 32 * dd;
                    if (d < D) { acc[rr][dd] += pj * v_s[jj * Dp + d]; }
                }
            }
        }
    }
    // o_i = acc / l, logsumexp_i = m + log(l); rows past Lq are computed but not written
    #pragma unroll
    for (int rr = 0; rr < V3_ROWS; rr++) {
        const int r = row0 + rr;
        if (i0 + r >= Lq) { continue; }
        const float inv_l = 1.0f / l_s[r];
        #pragma unroll
        for (int dd = 0; dd < V3_MAXDD; dd++) {
            int d = lane + 32 * dd;
            if (d < D) { o[(b * Lq + i0 + r) * D + d] = acc[rr][dd] * inv_l; }
        }
        if (lane == 0) { lse[b * Lq + i0 + r] = m_s[r] + logf(l_s[r]); }
    }
}
