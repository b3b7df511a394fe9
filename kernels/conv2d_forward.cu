/*
Kernels for the forward pass of a 2-D convolution (a cross-correlation, as in ddpm_ref/nn/conv.py):

    y[n,k,p,q] = b[k] + sum_{c,r,s} w[k,c,r,s] * x[n, c, p*stride + r - pad, q*stride + s - pad]

where x reads as 0 outside the image (zero padding). Shapes, all float32 and C-contiguous:
x (N,C,H,W), w (K,C,R,S), b (K), y (N,K,P,Q) with P = (H + 2*pad - R)/stride + 1, Q likewise.
Indices are 32-bit ints: every array must have fewer than 2^31 elements (kernels/ops.py checks).

Run it on a CPU (no GPU needed: validates against the NumPy reference at several block sizes,
then times it):
python -m kernels conv2d_forward 1
On an NVIDIA GPU (pip install -e ".[gpu]"):
python -m kernels conv2d_forward 1 --backend cuda
Compile check with NVRTC (registers, spills, shared memory; no GPU needed):
python -m kernels.nvrtc_check conv2d_forward.cu

version 1 is a direct port of the loop above: one thread per output element y[n,k,p,q], reading
x and w straight from global memory. Each weight is read N*P*Q times, each input pixel K*R*S times.

version 2 sees the convolution as a matrix product (an "implicit GEMM"):
    Y[k, j] = sum_e W[k, e] * X_col[e, j]
with e = (c, r, s) one tap of the filter (W is w viewed as K x C*R*S, no copy) and j = (n, p, q)
one output pixel. X_col is the im2col matrix of ddpm_ref/nn/conv.py, but it is never built:
im2col_element() computes each of its elements from x when it is needed. A block of 16x16 threads
computes a 16x16 tile of Y; it walks along e in steps of 16, each thread loading one element of
the W tile and one of the X_col tile into shared memory, so that every element loaded is used
16 times from fast memory instead of being read 16 times from global memory.

version 3 is the same implicit GEMM, register-tiled: a block of 256 threads computes a 64x64
tile of Y (64 output channels x 64 output pixels), each thread a 4x4 micro-tile of it, held in
16 registers. Per step of 16 taps, each thread reads 4 values of W and 4 of X_col from shared
memory and does 16 fused multiply-adds with them: 2 FMAs per shared load, where version 2 does
half an FMA per load (two loads per FMA). The output pixel each thread loads for X_col is the
same on every step, so its (n, p, q) is computed once, outside the loop; only the tap's (c, r, s)
is divided out per load.
  Expected gain (an ESTIMATE from the design, not measured: no GPU has been lent). Version 2 is
bound by shared-memory loads: 8 bytes per FMA against 128 bytes per clock per SM lets at most 16
of the 128 FP32 lanes of an H100 SM work, 1/8 of the FP32 peak (~67 TFLOP/s). Version 3 needs 2
bytes per FMA, so shared memory allows 64 FMAs per clock, 1/2 of peak; with 256 threads x ~64
registers (ptxas: see kernels/RESULTS.md) and 8 KiB of shared memory, 4 blocks fit on an SM.
At the bench shape 64x64x32x32 -> 64 (4.8 GFLOP) that is ~0.5 ms for version 2 against ~0.15 ms
for version 3: about 3x, at most 4x. Shapes with few output channels (K = 1, the U-Net's last
conv) waste 63 of 64 rows of each tile and gain nothing.

GPU timings: not measured yet (kernels/RESULTS.md says how to measure them).
*/

#ifndef CONV_TILE
#define CONV_TILE 16
#endif

// ----------------------------------------------------------------------------
// version 1: one thread per output element

extern "C" __global__ void conv2d_forward_kernel1(const float* __restrict__ x, const float* __restrict__ w,
                                                  const float* __restrict__ b, float* __restrict__ y,
                                                  int N, int C, int H, int W, int K, int R, int S,
                                                  int P, int Q, int stride, int pad) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= N * K * P * Q) { return; }
    // unflatten idx = ((n*K + k)*P + p)*Q + q
    int q = idx % Q;
    int p = (idx / Q) % P;
    int k = (idx / (Q * P)) % K;
    int n = idx / (Q * P * K);

    float acc = b[k];
    for (int c = 0; c < C; c++) {
        for (int r = 0; r < R; r++) {
            int h = p * stride + r - pad;
            if (h < 0 || h >= H) { continue; }            // a row of zero padding
            for (int s = 0; s < S; s++) {
                int ww = q * stride + s - pad;
                if (ww < 0 || ww >= W) { continue; }      // a column of zero padding
                acc += w[((k * C + c) * R + r) * S + s] * x[((n * C + c) * H + h) * W + ww];
            }
        }
    }
    y[idx] = acc;
}

// ----------------------------------------------------------------------------
// version 2: shared-memory tiled implicit GEMM

// Element (e, j) of the im2col matrix X_col (C*R*S rows, N*P*Q columns): the input value that
// filter tap e = (c, r, s) sees at output pixel j = (n, p, q). Zero outside the matrix, and in the padding.
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

// Launch with block (CONV_TILE, CONV_TILE) and grid (ceil(N*P*Q / CONV_TILE), ceil(K / CONV_TILE)).
extern "C" __global__ void conv2d_forward_kernel2(const float* __restrict__ x, const float* __restrict__ w,
                                                  const float* __restrict__ b, float* __restrict__ y,
                                                  int N, int C, int H, int W, int K, int R, int S,
                                                  int P, int Q, int stride, int pad) {
    __shared__ float w_tile[CONV_TILE][CONV_TILE];   // w_tile[ty][i] = W[k0 + ty][e0 + i]
    __shared__ float x_tile[CONV_TILE][CONV_TILE];   // x_tile[i][tx] = X_col[e0 + i][j0 + tx]
    const int tx = threadIdx.x;
    const int ty = threadIdx.y;
    const int k = blockIdx.y * CONV_TILE + ty;        // this thread's output channel: a row of Y
    const int j = blockIdx.x * CONV_TILE + tx;        // this thread's output pixel: a column of Y
    const int CRS = C * R * S;

    float acc = 0.0f;
    for (int e0 = 0; e0 < CRS; e0 += CONV_TILE) {
        // every thread loads one element of each tile (zeros past the edges of the matrices)
        w_tile[ty][tx] = (k < K && e0 + tx < CRS) ? w[k * CRS + e0 + tx] : 0.0f;
        x_tile[ty][tx] = im2col_element(x, e0 + ty, j, N, C, H, W, R, S, P, Q, stride, pad);
        __syncthreads();                               // the tiles are complete
        for (int i = 0; i < CONV_TILE; i++) {
            acc += w_tile[ty][i] * x_tile[i][tx];
        }
        __syncthreads();                               // everyone is done reading before the next load
    }
    if (k < K && j < N * P * Q) {
        int q = j % Q;
        int p = (j / Q) % P;
        int n = j / (Q * P);
        y[((n * K + k) * P + p) * Q + q] = acc + b[k];
    }
}

// ----------------------------------------------------------------------------
// version 3: register-tiled implicit GEMM (each thread a 4x4 micro-tile of Y)

#define V3_BM 64          // rows of Y (output channels k) per block
#define V3_BN 64          // columns of Y (output pixels j) per block
#define V3_BK 16          // taps e per step
#define V3_TM 4           // rows per thread
#define V3_TN 4           // columns per thread
#define V3_THREADS 256    // (V3_BM / V3_TM) * (V3_BN / V3_TN)

// Launch with block (V3_THREADS) and grid (ceil(N*P*Q / V3_BN), ceil(K / V3_BM)).
extern "C" __global__ __launch_bounds__(V3_THREADS) void conv2d_forward_kernel3(
        const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ b, float* __restrict__ y,
        int N, int C, int H, int W, int K, int R, int S, int P, int Q, int stride, int pad) {
    __shared__ float w_s[V3_BK][V3_BM];     // w_s[i][m] = W[k0 + m][e0 + i]: the W tile, transposed
    __shared__ float x_s[V3_BK][V3_BN];     // x_s[i][n] = X_col[e0 + i][j0 + n]
    const int t = threadIdx.x;
    const int k0 = blockIdx.y * V3_BM;
    const int j0 = blockIdx.x * V3_BN;
    const int CRS = C * R * S;
    const int RS = R * S;
    const int NPQ = N * P * Q;
    const int tm = (t / (V3_BN / V3_TN)) * V3_TM;   // this thread's first row in the tile
    const int tn = (t % (V3_BN / V3_TN)) * V3_TN;   // ... and first column

    // The X_col column this thread loads is the same on every step: decompose j = (n, p, q) once.
    const int load_n = t % V3_BN;
    const int jl = j0 + load_n;
    const bool jl_ok = jl < NPQ;
    const int ql = jl_ok ? jl % Q : 0;
    const int pl = jl_ok ? (jl / Q) % P : 0;
    const int nl = jl_ok ? jl / (Q * P) : 0;
    const int h_base = pl * stride - pad;
    const int w_base = ql * stride - pad;
    const float* x_img = x + nl * C * H * W;

    float acc[V3_TM][V3_TN];
    for (int i = 0; i < V3_TM; i++) {
        for (int jj = 0; jj < V3_TN; jj++) { acc[i][jj] = 0.0f; }
    }

    for (int e0 = 0; e0 < CRS; e0 += V3_BK) {
        // load the W tile: 64 x 16 values, 4 per thread; consecutive threads read consecutive taps
        for (int idx = t; idx < V3_BM * V3_BK; idx += V3_THREADS) {
            int m = idx / V3_BK, i = idx % V3_BK;
            int k = k0 + m, e = e0 + i;
            w_s[i][m] = (k < K && e < CRS) ? w[k * CRS + e] : 0.0f;
        }
        // load the X_col tile: 16 x 64 values, 4 per thread, all in this thread's column load_n
        for (int i = t / V3_BN; i < V3_BK; i += V3_THREADS / V3_BN) {
            int e = e0 + i;
            float v = 0.0f;
            if (jl_ok && e < CRS) {
                int c = e / RS, rs = e % RS;
                int h = h_base + rs / S, ww = w_base + rs % S;
                if (h >= 0 && h < H && ww >= 0 && ww < W) { v = x_img[(c * H + h) * W + ww]; }
            }
            x_s[i][load_n] = v;
        }
        __syncthreads();                                  // the tiles are complete
        for (int i = 0; i < V3_BK; i++) {
            float a[V3_TM], bb[V3_TN];
            for (int m = 0; m < V3_TM; m++) { a[m] = w_s[i][tm + m]; }
            for (int n = 0; n < V3_TN; n++) { bb[n] = x_s[i][tn + n]; }
            for (int m = 0; m < V3_TM; m++) {
                for (int n = 0; n < V3_TN; n++) { acc[m][n] += a[m] * bb[n]; }
            }
        }
        __syncthreads();                                  // everyone is done reading before the next load
    }
    for (int n = 0; n < V3_TN; n++) {
        int j = j0 + tn + n;
        if (j >= NPQ) { continue; }
        int q = j % Q, p = (j / Q) % P, img = j / (Q * P);
        for (int m = 0; m < V3_TM; m++) {
            int k = k0 + tm + m;
            if (k < K) { y[((img * K + k) * P + p) * Q + q] = acc[m][n] + b[k]; }
        }
    }
}
