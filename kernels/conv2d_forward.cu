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
