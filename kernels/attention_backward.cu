/*
Kernels for the backward pass of single-head scaled dot-product attention (see
attention_forward.cu for the forward pass; ddpm_ref/nn/attention.py for the NumPy reference):

    dv = P^T do
    dP = do v^T
    dS = P * (dP - rowsum(dP * P)) * scale          (the softmax backward, times the scale of S)
    dq = dS k,   dk = dS^T q

Shapes, float32, C-contiguous: q, o, do, dq (B, Lq, D); k, v, dk, dv (B, Lk, D); P (B, Lq, Lk);
logsumexp (B, Lq). Lq queries, Lk keys: Lq = Lk for self-attention, Lq image tokens and Lk context
tokens for cross-attention (see attention_forward.cu). Kernels that own query rows (dq) have
ceil(Lq / tile) blocks per sequence and loop over the keys; those that own key rows (dk, dv) have
ceil(Lk / tile) and loop over the queries. (`do` is a C++ keyword: the kernels call it dout.)

Run it on a CPU (validates against the NumPy reference, then times it):
python -m kernels attention_backward 1
On an NVIDIA GPU:
python -m kernels attention_backward 1 --backend cuda
Compile check: python -m kernels.nvrtc_check attention_backward.cu

version 1 is a direct port of the five NumPy lines, reading P saved by attention_forward.cu
version 1: one thread per element of dv, of dP, per row of the softmax backward, per element of
dq and of dk. It stores dP and dS, two (B, Lq, Lk) matrices, in global memory.

version 2 matches attention_forward.cu version 2: nothing of size Lq x Lk is ever stored. It
recomputes P_ij = exp(scale * q_i.k_j - logsumexp_i) from the logsumexp the forward pass saved,
and uses rowsum(dP * P)_i = sum_j P_ij (do_i . v_j) = do_i . o_i =: delta_i (one dot product per row,
attention_backward_preprocess_kernel2). Then two kernels, so that every output row has exactly
one thread adding into it (no atomics):
  * attention_backward_dkdv_kernel2: a block of T threads owns T of the Lk key rows j and walks
    over the Lq queries in tiles; thread j adds  P_ij do_i  into dv_j  and  dS_ij q_i  into dk_j.
  * attention_backward_dq_kernel2: a block of T threads owns T of the Lq query rows i and walks over
    the Lk keys in tiles; thread i adds  dS_ij k_j  into dq_i.
Both recompute the scores (the forward pass computed them once, the backward twice more): FLOPs
are traded for memory, the choice FlashAttention makes because memory traffic is what is slow.
Shared memory (dynamic): 6*T*(D+1) + 2*T floats for dkdv, 5*T*(D+1) for dq.

version 3 is version 2 with blocks of 4 warps (128 threads), as attention_forward.cu version 3.
The same preprocess kernel computes delta; then
  * attention_backward_dkdv_kernel3: a block owns 32 key rows (8 per warp) and walks over tiles
    of bq queries. Per tile, (A) the warp's lanes compute P_ij and dS_ij for its 8 keys x bq
    queries (lane -> (key, query) pairs) into shared memory, then (B) lane d adds P_ij do_i[d]
    into dv_j[d] and dS_ij q_i[d] into dk_j[d], in registers (d = lane, lane + 32, ...; D <= 128).
  * attention_backward_dq_kernel3: a block owns 32 query rows and walks over tiles of bkv keys:
    (A) dS_ij for its 8 queries x bkv keys, (B) lane d adds dS_ij k_j[d] into dq_i[d].
Tile lengths (bq, bkv) are the largest of 32, 16, 8, ... that fit 48 KiB (kernels/launch.py).
  Expected gain (an ESTIMATE, not measured: no GPU has been lent). Version 2's dkdv runs T = 8
threads per block at D = 64 (6*T*(D+1) floats must fit 48 KiB with T <= 16, and T = 32 does
not), one thread per key row doing serial dot products: a few percent of the SM in use.
Version 3 puts 128 threads on 32 rows and all 32 lanes on the dot products and the updates: about
5-10x faster at Lq = Lk >= 256, and the same for dq. (Cross-attention with Lk = 4 context tokens
gives the dkdv kernel one block per sequence, 4 of its 32 key rows busy: short, whatever the
version.)

GPU timings: not measured yet (kernels/RESULTS.md says how to measure them).
*/

// ----------------------------------------------------------------------------
// version 1: one thread per output element, reading the saved P

extern "C" __global__ void attention_dv_kernel1(const float* __restrict__ p, const float* __restrict__ dout,
                                                float* __restrict__ dv, int B, int Lq, int Lk, int D) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;     // idx = (b*Lk + j)*D + d
    if (idx >= B * Lk * D) { return; }
    int d = idx % D;
    int j = (idx / D) % Lk;
    int b = idx / (D * Lk);
    float acc = 0.0f;
    for (int i = 0; i < Lq; i++) {                       // dv = P^T do
        acc += p[(b * Lq + i) * Lk + j] * dout[(b * Lq + i) * D + d];
    }
    dv[idx] = acc;
}

extern "C" __global__ void attention_dp_kernel1(const float* __restrict__ dout, const float* __restrict__ v,
                                                float* __restrict__ dp, int B, int Lq, int Lk, int D) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;     // idx = (b*Lq + i)*Lk + j
    if (idx >= B * Lq * Lk) { return; }
    int j = idx % Lk;
    int i = (idx / Lk) % Lq;
    int b = idx / (Lq * Lk);
    float acc = 0.0f;
    for (int d = 0; d < D; d++) {                        // dP = do v^T
        acc += dout[(b * Lq + i) * D + d] * v[(b * Lk + j) * D + d];
    }
    dp[idx] = acc;
}

extern "C" __global__ void attention_softmax_backward_kernel1(const float* __restrict__ p, const float* __restrict__ dp,
                                                              float* __restrict__ ds, int B, int Lq, int Lk,
                                                              float scale) {
    int row = blockIdx.x * blockDim.x + threadIdx.x;     // row = b*Lq + i: one query, its Lk keys
    if (row >= B * Lq) { return; }
    const float* p_row = p + row * Lk;
    const float* dp_row = dp + row * Lk;
    float rowdot = 0.0f;                                 // rowsum(dP * P)
    for (int j = 0; j < Lk; j++) { rowdot += dp_row[j] * p_row[j]; }
    for (int j = 0; j < Lk; j++) {
        ds[row * Lk + j] = p_row[j] * (dp_row[j] - rowdot) * scale;
    }
}

extern "C" __global__ void attention_dq_kernel1(const float* __restrict__ ds, const float* __restrict__ k,
                                                float* __restrict__ dq, int B, int Lq, int Lk, int D) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;     // idx = (b*Lq + i)*D + d
    if (idx >= B * Lq * D) { return; }
    int d = idx % D;
    int i = (idx / D) % Lq;
    int b = idx / (D * Lq);
    float acc = 0.0f;
    for (int j = 0; j < Lk; j++) {                       // dq = dS k
        acc += ds[(b * Lq + i) * Lk + j] * k[(b * Lk + j) * D + d];
    }
    dq[idx] = acc;
}

extern "C" __global__ void attention_dk_kernel1(const float* __restrict__ ds, const float* __restrict__ q,
                                                float* __restrict__ dk, int B, int Lq, int Lk, int D) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;     // idx = (b*Lk + j)*D + d
    if (idx >= B * Lk * D) { return; }
    int d = idx % D;
    int j = (idx / D) % Lk;
    int b = idx / (D * Lk);
    float acc = 0.0f;
    for (int i = 0; i < Lq; i++) {                       // dk = dS^T q
        acc += ds[(b * Lq + i) * Lk + j] * q[(b * Lq + i) * D + d];
    }
    dk[idx] = acc;
}

// ----------------------------------------------------------------------------
// version 2: recompute P from the logsumexp, tiles in shared memory

// Launch with block (any), grid (ceil(B*Lq / block)): delta[b,i] = do_i . o_i, one per query.
extern "C" __global__ void attention_backward_preprocess_kernel2(const float* __restrict__ o,
                                                                 const float* __restrict__ dout,
                                                                 float* __restrict__ delta, int B, int Lq, int D) {
    int row = blockIdx.x * blockDim.x + threadIdx.x;
    if (row >= B * Lq) { return; }
    float acc = 0.0f;
    for (int d = 0; d < D; d++) { acc += dout[row * D + d] * o[row * D + d]; }
    delta[row] = acc;
}

// Load rows r0 .. r0+T-1 of a (B, L, D) array into a [T][D+1] shared tile (zeros past row L).
// L is that array's own length: Lq for q and do, Lk for k and v.
__device__ void load_rows(float* tile, const float* __restrict__ src, int b, int r0, int L, int D, int T) {
    for (int idx = threadIdx.x; idx < T * D; idx += blockDim.x) {
        int row = idx / D, d = idx % D;
        tile[row * (D + 1) + d] = (r0 + row < L) ? src[(b * L + r0 + row) * D + d] : 0.0f;
    }
}

// Write rows r0 .. of a [T][D+1] shared tile out to a (B, L, D) array (rows below L only).
__device__ void store_rows(float* __restrict__ dst, const float* tile, int b, int r0, int L, int D, int T) {
    for (int idx = threadIdx.x; idx < T * D; idx += blockDim.x) {
        int row = idx / D, d = idx % D;
        if (r0 + row < L) { dst[(b * L + r0 + row) * D + d] = tile[row * (D + 1) + d]; }
    }
}

__device__ float dot_rows(const float* a, const float* b, int D) {
    float acc = 0.0f;
    for (int d = 0; d < D; d++) { acc += a[d] * b[d]; }
    return acc;
}

// Launch with block (T), grid (ceil(Lk / T), B), shared_mem (6*T*(D+1) + 2*T) * 4 bytes.
extern "C" __global__ void attention_backward_dkdv_kernel2(const float* __restrict__ q, const float* __restrict__ k,
                                                           const float* __restrict__ v, const float* __restrict__ dout,
                                                           const float* __restrict__ lse,
                                                           const float* __restrict__ delta,
                                                           float* __restrict__ dk, float* __restrict__ dv,
                                                           int B, int Lq, int Lk, int D, float scale) {
    extern __shared__ float smem[];
    const int T = blockDim.x;
    const int Dp = D + 1;
    float* k_s = smem;                     // [T][Dp] this block's key rows
    float* v_s = k_s + T * Dp;             // [T][Dp] ... and value rows
    float* dk_s = v_s + T * Dp;            // [T][Dp] their gradients, summed over the query tiles
    float* dv_s = dk_s + T * Dp;           // [T][Dp]
    float* q_s = dv_s + T * Dp;            // [T][Dp] the current tile of queries
    float* do_s = q_s + T * Dp;            // [T][Dp] ... and of output gradients
    float* lse_s = do_s + T * Dp;          // [T] their logsumexp
    float* delta_s = lse_s + T;            // [T] ... and delta
    const int b = blockIdx.y;
    const int t = threadIdx.x;
    const int j0 = blockIdx.x * T;         // the block's first key row
    const bool active = j0 + t < Lk;

    load_rows(k_s, k, b, j0, Lk, D, T);
    load_rows(v_s, v, b, j0, Lk, D, T);
    for (int d = 0; d < D; d++) {
        dk_s[t * Dp + d] = 0.0f;
        dv_s[t * Dp + d] = 0.0f;
    }
    for (int i0 = 0; i0 < Lq; i0 += T) {   // tiles of T queries
        __syncthreads();                   // everyone is done with the previous query tile
        load_rows(q_s, q, b, i0, Lq, D, T);
        load_rows(do_s, dout, b, i0, Lq, D, T);
        lse_s[t] = (i0 + t < Lq) ? lse[b * Lq + i0 + t] : 0.0f;
        delta_s[t] = (i0 + t < Lq) ? delta[b * Lq + i0 + t] : 0.0f;
        __syncthreads();                   // the tile is loaded
        if (active) {
            const int nq = min(T, Lq - i0);
            for (int ii = 0; ii < nq; ii++) {
                const float* qi = q_s + ii * Dp;
                const float* doi = do_s + ii * Dp;
                float p = expf(scale * dot_rows(qi, k_s + t * Dp, D) - lse_s[ii]);   // P_ij, recomputed
                float dp = dot_rows(doi, v_s + t * Dp, D);                           // dP_ij
                float ds = p * (dp - delta_s[ii]) * scale;                           // dS_ij
                for (int d = 0; d < D; d++) {
                    dv_s[t * Dp + d] += p * doi[d];
                    dk_s[t * Dp + d] += ds * qi[d];
                }
            }
        }
    }
    __syncthreads();                       // all rows done: write them out, coalesced
    store_rows(dk, dk_s, b, j0, Lk, D, T);
    store_rows(dv, dv_s, b, j0, Lk, D, T);
}

// Launch with block (T), grid (ceil(Lq / T), B), shared_mem 5*T*(D+1) * 4 bytes.
extern "C" __global__ void attention_backward_dq_kernel2(const float* __restrict__ q, const float* __restrict__ k,
                                                         const float* __restrict__ v, const float* __restrict__ dout,
                                                         const float* __restrict__ lse,
                                                         const float* __restrict__ delta,
                                                         float* __restrict__ dq, int B, int Lq, int Lk, int D,
                                                         float scale) {
    extern __shared__ float smem[];
    const int T = blockDim.x;
    const int Dp = D + 1;
    float* q_s = smem;                     // [T][Dp] this block's query rows
    float* do_s = q_s + T * Dp;            // [T][Dp] ... their output gradients
    float* dq_s = do_s + T * Dp;           // [T][Dp] ... and their gradients, summed over key tiles
    float* k_s = dq_s + T * Dp;            // [T][Dp] the current tile of keys
    float* v_s = k_s + T * Dp;             // [T][Dp] ... and values
    const int b = blockIdx.y;
    const int t = threadIdx.x;
    const int i0 = blockIdx.x * T;         // the block's first query row
    const bool active = i0 + t < Lq;
    const float my_lse = active ? lse[b * Lq + i0 + t] : 0.0f;
    const float my_delta = active ? delta[b * Lq + i0 + t] : 0.0f;

    load_rows(q_s, q, b, i0, Lq, D, T);
    load_rows(do_s, dout, b, i0, Lq, D, T);
    for (int d = 0; d < D; d++) { dq_s[t * Dp + d] = 0.0f; }
    for (int j0 = 0; j0 < Lk; j0 += T) {   // tiles of T keys
        __syncthreads();
        load_rows(k_s, k, b, j0, Lk, D, T);
        load_rows(v_s, v, b, j0, Lk, D, T);
        __syncthreads();
        if (active) {
            const int nkeys = min(T, Lk - j0);
            for (int jj = 0; jj < nkeys; jj++) {
                const float* kj = k_s + jj * Dp;
                float p = expf(scale * dot_rows(q_s + t * Dp, kj, D) - my_lse);
                float dp = dot_rows(do_s + t * Dp, v_s + jj * Dp, D);
                float ds = p * (dp - my_delta) * scale;
                for (int d = 0; d < D; d++) { dq_s[t * Dp + d] += ds * kj[d]; }
            }
        }
    }
    __syncthreads();
    store_rows(dq, dq_s, b, i0, Lq, D, T);
}

// ----------------------------------------------------------------------------
// version 3: blocks of 4 warps, 8 rows per warp, lanes over (row, column) pairs, then over features

#define V3_WARPS 4
#define V3_ROWS 8                              // rows per warp
#define V3_BR (V3_WARPS * V3_ROWS)             // rows per block: 32
#define V3_MAXDD 4                             // features per lane: D <= 128

// Launch with block (128), grid (ceil(Lk / 32), B), shared_mem
// (2*32*(D+1) + 2*bq*(D+1) + 2*bq + 2*32*(bq+1)) * 4 bytes; bq in 1..32 is the query tile.
extern "C" __global__ __launch_bounds__(128) void attention_backward_dkdv_kernel3(
        const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
        const float* __restrict__ dout, const float* __restrict__ lse, const float* __restrict__ delta,
        float* __restrict__ dk, float* __restrict__ dv, int B, int Lq, int Lk, int D, float scale, int bq) {
    extern __shared__ float smem[];
    const int Dp = D + 1;
    float* k_s = smem;                         // [32][Dp] the block's key rows
    float* v_s = k_s + V3_BR * Dp;             // [32][Dp] ... and value rows
    float* q_s = v_s + V3_BR * Dp;             // [bq][Dp] the current query tile
    float* do_s = q_s + bq * Dp;               // [bq][Dp] ... and its output gradients
    float* lse_s = do_s + bq * Dp;             // [bq]
    float* delta_s = lse_s + bq;               // [bq]
    float* p_s = delta_s + bq;                 // [32][bq + 1] P_ij of each key row j, query i
    float* ds_s = p_s + V3_BR * (bq + 1);      // [32][bq + 1] dS_ij
    const int b = blockIdx.y;
    const int t = threadIdx.x;
    const int warp = t / 32, lane = t % 32;
    const int j0 = blockIdx.x * V3_BR;
    const int row0 = warp * V3_ROWS;

    for (int idx = t; idx < V3_BR * D; idx += blockDim.x) {
        int r = idx / D, d = idx % D;
        bool valid = j0 + r < Lk;
        k_s[r * Dp + d] = valid ? k[(b * Lk + j0 + r) * D + d] : 0.0f;
        v_s[r * Dp + d] = valid ? v[(b * Lk + j0 + r) * D + d] : 0.0f;
    }
    float dk_acc[V3_ROWS][V3_MAXDD], dv_acc[V3_ROWS][V3_MAXDD];
#pragma unroll
    for (int rr = 0; rr < V3_ROWS; rr++) {
#pragma unroll
        for (int dd = 0; dd < V3_MAXDD; dd++) { dk_acc[rr][dd] = 0.0f; dv_acc[rr][dd] = 0.0f; }
    }
    for (int i0 = 0; i0 < Lq; i0 += bq) {     // tiles of bq queries
        __syncthreads();                       // everyone is done with the previous query tile
        for (int idx = t; idx < bq * D; idx += blockDim.x) {
            int r = idx / D, d = idx % D;
            bool valid = i0 + r < Lq;
            q_s[r * Dp + d] = valid ? q[(b * Lq + i0 + r) * D + d] : 0.0f;
            do_s[r * Dp + d] = valid ? dout[(b * Lq + i0 + r) * D + d] : 0.0f;
        }
        for (int r = t; r < bq; r += blockDim.x) {
            lse_s[r] = (i0 + r < Lq) ? lse[b * Lq + i0 + r] : 0.0f;
            delta_s[r] = (i0 + r < Lq) ? delta[b * Lq + i0 + r] : 0.0f;
        }
        __syncthreads();                       // the tile is loaded
        const int nq = min(bq, Lq - i0);
        // A. P_ij and dS_ij for the warp's 8 key rows x the tile's queries
        for (int idx = lane; idx < V3_ROWS * bq; idx += 32) {
            int rr = idx / bq, ii = idx % bq;
            const float* kj = k_s + (row0 + rr) * Dp;
            const float* vj = v_s + (row0 + rr) * Dp;
            float s = 0.0f, dp = 0.0f;
            for (int d = 0; d < D; d++) {
                s += q_s[ii * Dp + d] * kj[d];
                dp += do_s[ii * Dp + d] * vj[d];
            }
            float p = ii < nq ? expf(scale * s - lse_s[ii]) : 0.0f;     // P_ij, recomputed
            p_s[(row0 + rr) * (bq + 1) + ii] = p;
            ds_s[(row0 + rr) * (bq + 1) + ii] = p * (dp - delta_s[ii]) * scale;
        }
        __syncwarp();
        // B. dv_j += P_ij do_i, dk_j += dS_ij q_i; lane owns features lane, lane + 32, ...
#pragma unroll
        for (int rr = 0; rr < V3_ROWS; rr++) {
            const float* prow = p_s + (row0 + rr) * (bq + 1);
            const float* dsrow = ds_s + (row0 + rr) * (bq + 1);
            for (int ii = 0; ii < nq; ii++) {
                const float p = prow[ii], ds = dsrow[ii];
#pragma unroll
                for (int dd = 0; dd < V3_MAXDD; dd++) {
                    int d = lane + 32 * dd;
                    if (d < D) {
                        dv_acc[rr][dd] += p * do_s[ii * Dp + d];
                        dk_acc[rr][dd] += ds * q_s[ii * Dp + d];
                    }
                }
            }
        }
        __syncwarp();                          // (the next tile's step A overwrites p_s, ds_s)
    }
#pragma unroll
    for (int rr = 0; rr < V3_ROWS; rr++) {
        const int j = j0 + row0 + rr;
        if (j >= Lk) { continue; }
#pragma unroll
        for (int dd = 0; dd < V3_MAXDD; dd++) {
            int d = lane + 32 * dd;
            if (d < D) {
                dk[(b * Lk + j) * D + d] = dk_acc[rr][dd];
                dv[(b * Lk + j) * D + d] = dv_acc[rr][dd];
            }
        }
    }
}

// Launch with block (128), grid (ceil(Lq / 32), B), shared_mem
// (2*32*(D+1) + 2*bkv*(D+1) + 2*32 + 32*(bkv+1)) * 4 bytes; bkv in 1..32 is the key tile.
extern "C" __global__ __launch_bounds__(128) void attention_backward_dq_kernel3(
        const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
        const float* __restrict__ dout, const float* __restrict__ lse, const float* __restrict__ delta,
        float* __restrict__ dq, int B, int Lq, int Lk, int D, float scale, int bkv) {
    extern __shared__ float smem[];
    const int Dp = D + 1;
    float* q_s = smem;                         // [32][Dp] the block's query rows
    float* do_s = q_s + V3_BR * Dp;            // [32][Dp] ... and their output gradients
    float* k_s = do_s + V3_BR * Dp;            // [bkv][Dp] the current key tile
    float* v_s = k_s + bkv * Dp;               // [bkv][Dp] ... and value tile
    float* lse_s = v_s + bkv * Dp;             // [32]
    float* delta_s = lse_s + V3_BR;            // [32]
    float* ds_s = delta_s + V3_BR;             // [32][bkv + 1] dS_ij
    const int b = blockIdx.y;
    const int t = threadIdx.x;
    const int warp = t / 32, lane = t % 32;
    const int i0 = blockIdx.x * V3_BR;
    const int row0 = warp * V3_ROWS;

    for (int idx = t; idx < V3_BR * D; idx += blockDim.x) {
        int r = idx / D, d = idx % D;
        bool valid = i0 + r < Lq;
        q_s[r * Dp + d] = valid ? q[(b * Lq + i0 + r) * D + d] : 0.0f;
        do_s[r * Dp + d] = valid ? dout[(b * Lq + i0 + r) * D + d] : 0.0f;
    }
    if (t < V3_BR) {
        lse_s[t] = (i0 + t < Lq) ? lse[b * Lq + i0 + t] : 0.0f;
        delta_s[t] = (i0 + t < Lq) ? delta[b * Lq + i0 + t] : 0.0f;
    }
    float dq_acc[V3_ROWS][V3_MAXDD];
#pragma unroll
    for (int rr = 0; rr < V3_ROWS; rr++) {
#pragma unroll
        for (int dd = 0; dd < V3_MAXDD; dd++) { dq_acc[rr][dd] = 0.0f; }
    }
    for (int j0 = 0; j0 < Lk; j0 += bkv) {    // tiles of bkv keys
        __syncthreads();
        for (int idx = t; idx < bkv * D; idx += blockDim.x) {
            int r = idx / D, d = idx % D;
            bool valid = j0 + r < Lk;
            k_s[r * Dp + d] = valid ? k[(b * Lk + j0 + r) * D + d] : 0.0f;
            v_s[r * Dp + d] = valid ? v[(b * Lk + j0 + r) * D + d] : 0.0f;
        }
        __syncthreads();
        const int nk = min(bkv, Lk - j0);
        // A. dS_ij for the warp's 8 query rows x the tile's keys
        for (int idx = lane; idx < V3_ROWS * bkv; idx += 32) {
            int rr = idx / bkv, jj = idx % bkv;
            const int r = row0 + rr;
            float s = 0.0f, dp = 0.0f;
            for (int d = 0; d < D; d++) {
                s += q_s[r * Dp + d] * k_s[jj * Dp + d];
                dp += do_s[r * Dp + d] * v_s[jj * Dp + d];
            }
            float p = jj < nk ? expf(scale * s - lse_s[r]) : 0.0f;
            ds_s[r * (bkv + 1) + jj] = p * (dp - delta_s[r]) * scale;
        }
        __syncwarp();
        // B. dq_i += dS_ij k_j; lane owns features lane, lane + 32, ...
        for (int jj = 0; jj < nk; jj++) {
            float kd[V3_MAXDD];
#pragma unroll
            for (int dd = 0; dd < V3_MAXDD; dd++) {
                int d = lane + 32 * dd;
                kd[dd] = d < D ? k_s[jj * Dp + d] : 0.0f;
            }
#pragma unroll
            for (int rr = 0; rr < V3_ROWS; rr++) {
                const float ds = ds_s[(row0 + rr) * (bkv + 1) + jj];
#pragma unroll
                for (int dd = 0; dd < V3_MAXDD; dd++) { dq_acc[rr][dd] += ds * kd[dd]; }
            }
        }
        __syncwarp();
    }
#pragma unroll
    for (int rr = 0; rr < V3_ROWS; rr++) {
        const int i = i0 + row0 + rr;
        if (i >= Lq) { continue; }
#pragma unroll
        for (int dd = 0; dd < V3_MAXDD; dd++) {
            int d = lane + 32 * dd;
            if (d < D) { dq[(b * Lq + i) * D + d] = dq_acc[rr][dd]; }
        }
    }
}
