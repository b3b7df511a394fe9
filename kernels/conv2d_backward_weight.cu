/*
Kernels for the backward pass of a 2-D convolution with respect to its weights and bias (see
conv2d_forward.cu for the forward pass and the shapes):

    dw[k,c,r,s] = sum_{n,p,q} dy[n,k,p,q] * x[n, c, p*stride + r - pad, q*stride + s - pad]
    db[k]       = sum_{n,p,q} dy[n,k,p,q]

(x reads as 0 in the padding). Shapes, float32, C-contiguous: x (N,C,H,W), dy (N,K,P,Q),
dw (K,C,R,S), db (K).

Run it on a CPU (validates against the NumPy reference, then times it):
python -m kernels conv2d_backward_weight 1
On an NVIDIA GPU:
python -m kernels conv2d_backward_weight 1 --backend cuda
Compile check: python -m kernels.nvrtc_check conv2d_backward_weight.cu

version 1 is a direct port of the sums: one thread per dw element (and, in
conv2d_backward_bias_kernel1, one thread per db element), each looping over all N*P*Q output pixels.

version 2: dw is the matrix product
    dW[k, e] = sum_j DY[k, j] * X_col[e, j]
with j = (n, p, q) an output pixel, e = (c, r, s) a filter tap and X_col the im2col matrix of
conv2d_forward.cu: the same 16x16 shared-memory tiles as conv2d_forward.cu version 2, with the
long sum over j (N*P*Q terms) as the loop. Only ceil(K/16) * ceil(C*R*S/16) blocks exist, each
with a long loop: a faster version would split j across blocks ("split-K") and add the partial sums.
The bias gradient gets one block per channel k (conv2d_backward_bias_kernel2): each thread adds a
strided slice of dy[:, k], then the block adds its threads' sums in shared memory, halving the
number of active threads at each step (a tree reduction; blockDim.x must be a power of 2).

version 3 splits the long sum ("split-K") and register-tiles it. Block (x, y, z) computes a
64x64 tile of dW (64 output channels x 64 filter taps), each thread a 4x4 micro-tile in
registers, over the z-th of `splits` slices of the N*P*Q pixels, and writes its partial sums to
a workspace partial[z][k][e]; conv2d_backward_reduce_kernel3 then adds the slices (a second
pass: deterministic, no atomics, so the result does not depend on the order blocks run in).
The bias gradient is split the same way (conv2d_backward_bias_kernel3: one block per channel
and slice, a tree reduction in shared memory) and reduced by the same kernel. kernels/launch.py
picks splits so that there are at least ~264 blocks (two per SM of an H100) and each slice keeps
at least 256 pixels (1024 for the bias).
  Expected gain (an ESTIMATE, not measured: no GPU has been lent). Version 2's grid for the
bench shape 64x64x32x32 -> 64 is ceil(576/16) x ceil(64/16) = 144 blocks of 256 threads, each
looping over 65,536 pixels: about one block per SM, 8 warps, so latency-bound at perhaps 5-10%
of the FP32 peak; for the U-Net's first conv (C = 1) it is 2 blocks. Version 3 at the same shape
has 9 x 1 tiles x 29 slices = 261 blocks, 2 FMAs per shared load, 4 blocks per SM: about 10-20x
faster than version 2 there (the weight gradient is ~4.8 GFLOP, 0.3-0.6 ms against ~5 ms), plus
the second pass (K*C*R*S*splits floats read once: ~4 MB, a few microseconds).

GPU timings: not measured yet (kernels/RESULTS.md says how to measure them).
*/

#ifndef CONV_TILE
#define CONV_TILE 16
#endif
#define BIAS_THREADS 256

// ----------------------------------------------------------------------------
// version 1: one thread per output element

extern "C" __global__ void conv2d_backward_weight_kernel1(const float* __restrict__ x, const float* __restrict__ dy,
                                                          float* __restrict__ dw,
                                                          int N, int C, int H, int W, int K, int R, int S,
                                                          int P, int Q, int stride, int pad) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= K * C * R * S) { return; }
    // unflatten idx = ((k*C + c)*R + r)*S + s
    int s = idx % S;
    int r = (idx / S) % R;
    int c = (idx / (S * R)) % C;
    int k = idx / (S * R * C);

    float acc = 0.0f;
    for (int n = 0; n < N; n++) {
        for (int p = 0; p < P; p++) {
            int h = p * stride + r - pad;
            if (h < 0 || h >= H) { continue; }
            for (int q = 0; q < Q; q++) {
                int ww = q * stride + s - pad;
                if (ww < 0 || ww >= W) { continue; }
                acc += dy[((n * K + k) * P + p) * Q + q] * x[((n * C + c) * H + h) * W + ww];
            }
        }
    }
    dw[idx] = acc;
}

extern "C" __global__ void conv2d_backward_bias_kernel1(const float* __restrict__ dy, float* __restrict__ db,
                                                        int N, int K, int P, int Q) {
    int k = blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= K) { return; }
    float acc = 0.0f;
    for (int n = 0; n < N; n++) {
        for (int pq = 0; pq < P * Q; pq++) {
            acc += dy[(n * K + k) * P * Q + pq];
        }
    }
    db[k] = acc;
}

// ----------------------------------------------------------------------------
// version 2: shared-memory tiled implicit GEMM, and a block reduction for the bias

// Element (e, j) of the im2col matrix (the same function as in conv2d_forward.cu): the input
// value that filter tap e = (c, r, s) sees at output pixel j = (n, p, q).
__device__ float im2col_element(const float* __restrict__ x, int e, int j, int N, int C, int H, int W,
                                int R, int S, int P, int Q, int stride, int pad) {
    if (e >= C * R * S || j >= N * P * Q) { return 0.0f; }
    int s = e % S;
    int r = (e / S) % R;
    int c = e / (S * R);
    int q = j % Q;
    int p = (j / Q) % P;
    int n = j / (Q * P);
    int h = p * stride + r - pad;
    int ww = q * stride + s - pad;
    if (h < 0 || h >= H || ww < 0 || ww >= W) { return 0.0f; }
    return x[((n * C + c) * H + h) * W + ww];
}

// Launch with block (CONV_TILE, CONV_TILE) and grid (ceil(C*R*S / CONV_TILE), ceil(K / CONV_TILE)).
extern "C" __global__ void conv2d_backward_weight_kernel2(const float* __restrict__ x, const float* __restrict__ dy,
                                                          float* __restrict__ dw,
                                                          int N, int C, int H, int W, int K, int R, int S,
                                                          int P, int Q, int stride, int pad) {
    __shared__ float dy_tile[CONV_TILE][CONV_TILE];   // dy_tile[ty][i] = DY[k0 + ty][j0 + i]
    __shared__ float x_tile[CONV_TILE][CONV_TILE];    // x_tile[i][tx] = X_col[e0 + tx][j0 + i]
    const int tx = threadIdx.x;
    const int ty = threadIdx.y;
    const int k = blockIdx.y * CONV_TILE + ty;         // this thread's output channel: a row of dW
    const int e = blockIdx.x * CONV_TILE + tx;         // this thread's filter tap: a column of dW
    const int NPQ = N * P * Q;
    const int PQ = P * Q;

    float acc = 0.0f;
    for (int j0 = 0; j0 < NPQ; j0 += CONV_TILE) {
        int j = j0 + tx;                               // DY[k][j] = dy[n, k, p, q] with j = (n, p, q)
        dy_tile[ty][tx] = (k < K && j < NPQ) ? dy[((j / PQ) * K + k) * PQ + j % PQ] : 0.0f;
        x_tile[ty][tx] = im2col_element(x, e, j0 + ty, N, C, H, W, R, S, P, Q, stride, pad);
        __syncthreads();
        for (int i = 0; i < CONV_TILE; i++) {
            acc += dy_tile[ty][i] * x_tile[i][tx];
        }
        __syncthreads();
    }
    if (k < K && e < C * R * S) {
        dw[k * C * R * S + e] = acc;
    }
}

// Launch with block (BIAS_THREADS) and grid (K): block k computes db[k].
extern "C" __global__ void conv2d_backward_bias_kernel2(const float* __restrict__ dy, float* __restrict__ db,
                                                        int N, int K, int P, int Q) {
    __shared__ float partial[BIAS_THREADS];
    const int k = blockIdx.x;
    const int t = threadIdx.x;
    const int PQ = P * Q;
    // 1. each thread sums a strided slice of the N*P*Q values of channel k
    float acc = 0.0f;
    for (int j = t; j < N * PQ; j += blockDim.x) {
        acc += dy[((j / PQ) * K + k) * PQ + j % PQ];
    }
    partial[t] = acc;
    __syncthreads();
    // 2. tree reduction: at each step the first half of the threads adds the second half's sums
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (t < half) { partial[t] += partial[t + half]; }
        __syncthreads();
    }
    if (t == 0) { db[k] = partial[0]; }
}

// ----------------------------------------------------------------------------
// version 3: split-K register-tiled GEMM into a workspace, then a reduction over the slices

#define V3_BM 64          // rows of dW (output channels k) per block
#define V3_BN 64          // columns of dW (filter taps e) per block
#define V3_BK 16          // pixels j per step
#define V3_TM 4
#define V3_TN 4
#define V3_THREADS 256

// Launch with block (V3_THREADS), grid (ceil(C*R*S / V3_BN), ceil(K / V3_BM), splits):
// partial[z][k][e] = sum over the z-th slice of pixels j of DY[k][j] * X_col[e][j].
extern "C" __global__ __launch_bounds__(V3_THREADS) void conv2d_backward_weight_kernel3(
        const float* __restrict__ x, const float* __restrict__ dy, float* __restrict__ partial,
        int N, int C, int H, int W, int K, int R, int S, int P, int Q, int stride, int pad) {
    __shared__ float dy_s[V3_BK][V3_BM];    // dy_s[i][m] = DY[k0 + m][j0 + i]
    __shared__ float x_s[V3_BK][V3_BN];     // x_s[i][n] = X_col[e0 + n][j0 + i]
    const int t = threadIdx.x;
    const int e0 = blockIdx.x * V3_BN;
    const int k0 = blockIdx.y * V3_BM;
    const int CRS = C * R * S;
    const int RS = R * S;
    const int PQ = P * Q;
    const int NPQ = N * PQ;
    // this block's slice of the pixels, a whole number of steps long
    const int chunk = ((NPQ + gridDim.z - 1) / gridDim.z + V3_BK - 1) / V3_BK * V3_BK;
    const int j_begin = blockIdx.z * chunk;
    const int j_end = min(NPQ, j_begin + chunk);
    const int tm = (t / (V3_BN / V3_TN)) * V3_TM;
    const int tn = (t % (V3_BN / V3_TN)) * V3_TN;

    // The X_col row (filter tap e) this thread loads is the same on every step: e = (c, r, s) once.
    const int load_n = t % V3_BN;
    const int el = e0 + load_n;
    const bool el_ok = el < CRS;
    const int cl = el_ok ? el / RS : 0;
    const int rl = el_ok ? (el % RS) / S : 0;
    const int sl = el_ok ? el % S : 0;

    float acc[V3_TM][V3_TN];
    for (int i = 0; i < V3_TM; i++) {
        for (int jj = 0; jj < V3_TN; jj++) { acc[i][jj] = 0.0f; }
    }

    for (int j0 = j_begin; j0 < j_end; j0 += V3_BK) {
        for (int idx = t; idx < V3_BM * V3_BK; idx += V3_THREADS) {
            int m = idx / V3_BK, i = idx % V3_BK;
            int k = k0 + m, j = j0 + i;
            dy_s[i][m] = (k < K && j < j_end) ? dy[((j / PQ) * K + k) * PQ + j % PQ] : 0.0f;
        }
        for (int i = t / V3_BN; i < V3_BK; i += V3_THREADS / V3_BN) {
            int j = j0 + i;
            float v = 0.0f;
            if (el_ok && j < j_end) {
                int q = j % Q, p = (j / Q) % P, img = j / PQ;
                int h = p * stride + rl - pad, ww = q * stride + sl - pad;
                if (h >= 0 && h < H && ww >= 0 && ww < W) { v = x[((img * C + cl) * H + h) * W + ww]; }
            }
            x_s[i][load_n] = v;
        }
        __syncthreads();
        for (int i = 0; i < V3_BK; i++) {
            float a[V3_TM], bb[V3_TN];
            for (int m = 0; m < V3_TM; m++) { a[m] = dy_s[i][tm + m]; }
            for (int n = 0; n < V3_TN; n++) { bb[n] = x_s[i][tn + n]; }
            for (int m = 0; m < V3_TM; m++) {
                for (int n = 0; n < V3_TN; n++) { acc[m][n] += a[m] * bb[n]; }
            }
        }
        __syncthreads();
    }
    float* out = partial + blockIdx.z * K * CRS;
    for (int m = 0; m < V3_TM; m++) {
        int k = k0 + tm + m;
        if (k >= K) { continue; }
        for (int n = 0; n < V3_TN; n++) {
            int e = e0 + tn + n;
            if (e < CRS) { out[k * CRS + e] = acc[m][n]; }
        }
    }
}

// Launch with block (BIAS_THREADS), grid (K, splits): partial_b[z][k] = the z-th slice's sum of dy[:, k].
extern "C" __global__ void conv2d_backward_bias_kernel3(const float* __restrict__ dy, float* __restrict__ partial_b,
                                                        int N, int K, int P, int Q) {
    __shared__ float sums[BIAS_THREADS];
    const int k = blockIdx.x;
    const int t = threadIdx.x;
    const int PQ = P * Q;
    const int chunk = (N * PQ + gridDim.y - 1) / gridDim.y;
    const int j_begin = blockIdx.y * chunk;
    const int j_end = min(N * PQ, j_begin + chunk);
    float acc = 0.0f;
    for (int j = j_begin + t; j < j_end; j += blockDim.x) {
        acc += dy[((j / PQ) * K + k) * PQ + j % PQ];
    }
    sums[t] = acc;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (t < half) { sums[t] += sums[t + half]; }
        __syncthreads();
    }
    if (t == 0) { partial_b[blockIdx.y * K + k] = sums[0]; }
}

// Launch with any block, grid (ceil(M / block)): out[i] = sum over the slices z of partial[z][i].
extern "C" __global__ void conv2d_backward_reduce_kernel3(const float* __restrict__ partial, float* __restrict__ out,
                                                          int splits, int M) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= M) { return; }
    float acc = 0.0f;
    for (int z = 0; z < splits; z++) { acc += partial[z * M + i]; }
    out[i] = acc;
}
