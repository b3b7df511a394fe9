/*
Kernels for the backward pass of a 2-D convolution with respect to its input (see
conv2d_forward.cu for the forward pass and the shapes):

    dx[n,c,h,w] = sum_{k,r,s} w[k,c,r,s] * dy[n, k, (h + pad - r)/stride, (w + pad - s)/stride]

where a term exists only if (h + pad - r) and (w + pad - s) are multiples of stride and the
quotients are inside dy: input pixel (h, w) was seen by output pixel (p, q) through tap (r, s)
exactly when h = p*stride + r - pad. NumPy (ddpm_ref/nn/conv.py) scatters instead ("col2im":
every output adds into the pixels it read); a GPU thread per dx element gathers, so that no two
threads write the same element and no atomics are needed.
Shapes, float32, C-contiguous: dy (N,K,P,Q), w (K,C,R,S), dx (N,C,H,W).

Run it on a CPU (validates against the NumPy reference, then times it):
python -m kernels conv2d_backward_data 1
On an NVIDIA GPU:
python -m kernels conv2d_backward_data 1 --backend cuda
Compile check: python -m kernels.nvrtc_check conv2d_backward_data.cu

version 1 is a direct port of the sum above: one thread per dx element, looping over (k, r, s).

version 2 is the same shared-memory tiled implicit GEMM as conv2d_forward.cu version 2, on the
matrix product
    dX[c, j] = sum_e W_T[c, e] * DY_col[e, j]
with j = (n, h, w) an input pixel, e = (k, r, s), W_T[c, e] = w[k,c,r,s] and DY_col[e, j] the
dy element of the formula above (0 where no term exists). With stride 2, three quarters of
DY_col are such zeros: a faster version would split the pixels by (h % stride, w % stride).

version 3 is version 2 register-tiled, as conv2d_forward.cu version 3: a block of 256 threads
computes a 64x64 tile of dX (64 input channels x 64 input pixels), each thread a 4x4 micro-tile
in registers, reading 4 + 4 values from shared memory per 16 FMAs. The input pixel (n, h, w) a
thread loads for DY_col is the same on every step and is decomposed once, outside the loop.
  Expected gain (an ESTIMATE, not measured: no GPU has been lent): as for the forward pass,
shared-memory traffic per FMA drops 4x, from 1/8 of the FP32 peak to about 1/2, so about 3x over
version 2 at the bench shapes. With stride 2 three quarters of DY_col are still zeros that are
multiplied (splitting the pixels by (h % stride, w % stride) would remove them: not done).

GPU timings: not measured yet (kernels/RESULTS.md says how to measure them).
*/

#ifndef CONV_TILE
#define CONV_TILE 16
#endif

// ----------------------------------------------------------------------------
// version 1: one thread per input-gradient element

extern "C" __global__ void conv2d_backward_data_kernel1(const float* __restrict__ dy, const float* __restrict__ w,
                                                        float* __restrict__ dx,
                                                        int N, int C, int H, int W, int K, int R, int S,
                                                        int P, int Q, int stride, int pad) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= N * C * H * W) { return; }
    // unflatten idx = ((n*C + c)*H + h)*W + ww
    int ww = idx % W;
    int h = (idx / W) % H;
    int c = (idx / (W * H)) % C;
    int n = idx / (W * H * C);

    float acc = 0.0f;
    for (int k = 0; k < K; k++) {
        for (int r = 0; r < R; r++) {
            int hp = h + pad - r;                        // = p * stride if output row p saw row h
            if (hp < 0 || hp % stride != 0 || hp / stride >= P) { continue; }
            int p = hp / stride;
            for (int s = 0; s < S; s++) {
                int wq = ww + pad - s;
                if (wq < 0 || wq % stride != 0 || wq / stride >= Q) { continue; }
                int q = wq / stride;
                acc += w[((k * C + c) * R + r) * S + s] * dy[((n * K + k) * P + p) * Q + q];
            }
        }
    }
    dx[idx] = acc;
}

// ----------------------------------------------------------------------------
// version 2: shared-memory tiled implicit GEMM

// Element (e, j) of DY_col (K*R*S rows, N*H*W columns): the dy value that reaches input pixel
// j = (n, h, w) through tap e = (k, r, s), or 0 if that tap never touched this pixel.
__device__ float dy_col_element(const float* __restrict__ dy, int e, int j, int N, int H, int W, int K,
                                int R, int S, int P, int Q, int stride, int pad) {
    if (e >= K * R * S || j >= N * H * W) { return 0.0f; }
    int s = e % S;
    int r = (e / S) % R;
    int k = e / (S * R);
    int ww = j % W;
    int h = (j / W) % H;
    int n = j / (W * H);
    int hp = h + pad - r;
    int wq = ww + pad - s;
    if (hp < 0 || wq < 0 || hp % stride != 0 || wq % stride != 0) { return 0.0f; }
    int p = hp / stride;
    int q = wq / stride;
    if (p >= P || q >= Q) { return 0.0f; }
    return dy[((n * K + k) * P + p) * Q + q];
}

// Launch with block (CONV_TILE, CONV_TILE) and grid (ceil(N*H*W / CONV_TILE), ceil(C / CONV_TILE)).
extern "C" __global__ void conv2d_backward_data_kernel2(const float* __restrict__ dy, const float* __restrict__ w,
                                                        float* __restrict__ dx,
                                                        int N, int C, int H, int W, int K, int R, int S,
                                                        int P, int Q, int stride, int pad) {
    __shared__ float w_tile[CONV_TILE][CONV_TILE];    // w_tile[ty][i] = W_T[c0 + ty][e0 + i]
    __shared__ float dy_tile[CONV_TILE][CONV_TILE];   // dy_tile[i][tx] = DY_col[e0 + i][j0 + tx]
    const int tx = threadIdx.x;
    const int ty = threadIdx.y;
    const int c = blockIdx.y * CONV_TILE + ty;         // this thread's input channel: a row of dX
    const int j = blockIdx.x * CONV_TILE + tx;         // this thread's input pixel: a column of dX
    const int KRS = K * R * S;
    const int RS = R * S;

    float acc = 0.0f;
    for (int e0 = 0; e0 < KRS; e0 += CONV_TILE) {
        int e = e0 + tx;                               // W_T[c][e] = w[k, c, r, s] with e = (k, r, s)
        w_tile[ty][tx] = (c < C && e < KRS) ? w[((e / RS) * C + c) * RS + e % RS] : 0.0f;
        dy_tile[ty][tx] = dy_col_element(dy, e0 + ty, j, N, H, W, K, R, S, P, Q, stride, pad);
        __syncthreads();
        for (int i = 0; i < CONV_TILE; i++) {
            acc += w_tile[ty][i] * dy_tile[i][tx];
        }
        __syncthreads();
    }
    if (c < C && j < N * H * W) {
        int ww = j % W;
        int h = (j / W) % H;
        int n = j / (W * H);
        dx[((n * C + c) * H + h) * W + ww] = acc;
    }
}

// ----------------------------------------------------------------------------
// version 3: register-tiled implicit GEMM (each thread a 4x4 micro-tile of dX)

#define V3_BM 64          // rows of dX (input channels c) per block
#define V3_BN 64          // columns of dX (input pixels j) per block
#define V3_BK 16          // taps e = (k, r, s) per step
#define V3_TM 4
#define V3_TN 4
#define V3_THREADS 256

// Launch with block (V3_THREADS) and grid (ceil(N*H*W / V3_BN), ceil(C / V3_BM)).
extern "C" __global__ __launch_bounds__(V3_THREADS) void conv2d_backward_data_kernel3(
        const float* __restrict__ dy, const float* __restrict__ w, float* __restrict__ dx,
        int N, int C, int H, int W, int K, int R, int S, int P, int Q, int stride, int pad) {
    __shared__ float w_s[V3_BK][V3_BM];      // w_s[i][m] = W_T[c0 + m][e0 + i] = w[k, c0 + m, r, s]
    __shared__ float dy_s[V3_BK][V3_BN];     // dy_s[i][n] = DY_col[e0 + i][j0 + n]
    const int t = threadIdx.x;
    const int c0 = blockIdx.y * V3_BM;
    const int j0 = blockIdx.x * V3_BN;
    const int KRS = K * R * S;
    const int RS = R * S;
    const int NHW = N * H * W;
    const int tm = (t / (V3_BN / V3_TN)) * V3_TM;
    const int tn = (t % (V3_BN / V3_TN)) * V3_TN;

    // The DY_col column this thread loads: input pixel j = (n, h, w), decomposed once.
    const int load_n = t % V3_BN;
    const int jl = j0 + load_n;
    const bool jl_ok = jl < NHW;
    const int wl = jl_ok ? jl % W : 0;
    const int hl = jl_ok ? (jl / W) % H : 0;
    const int nl = jl_ok ? jl / (W * H) : 0;
    const float* dy_img = dy + nl * K * P * Q;

    float acc[V3_TM][V3_TN];
    for (int i = 0; i < V3_TM; i++) {
        for (int jj = 0; jj < V3_TN; jj++) { acc[i][jj] = 0.0f; }
    }

    for (int e0 = 0; e0 < KRS; e0 += V3_BK) {
        for (int idx = t; idx < V3_BM * V3_BK; idx += V3_THREADS) {
            int m = idx / V3_BK, i = idx % V3_BK;
            int c = c0 + m, e = e0 + i;
            w_s[i][m] = (c < C && e < KRS) ? w[((e / RS) * C + c) * RS + e % RS] : 0.0f;
        }
        for (int i = t / V3_BN; i < V3_BK; i += V3_THREADS / V3_BN) {
            int e = e0 + i;
            float v = 0.0f;
            if (jl_ok && e < KRS) {
                int k = e / RS, rs = e % RS;
                int hp = hl + pad - rs / S;            // = p * stride if output row p saw row h
                int wq = wl + pad - rs % S;
                if (hp >= 0 && wq >= 0 && hp % stride == 0 && wq % stride == 0) {
                    int p = hp / stride, q = wq / stride;
                    if (p < P && q < Q) { v = dy_img[(k * P + p) * Q + q]; }
                }
            }
            dy_s[i][load_n] = v;
        }
        __syncthreads();
        for (int i = 0; i < V3_BK; i++) {
            float a[V3_TM], bb[V3_TN];
            for (int m = 0; m < V3_TM; m++) { a[m] = w_s[i][tm + m]; }
            for (int n = 0; n < V3_TN; n++) { bb[n] = dy_s[i][tn + n]; }
            for (int m = 0; m < V3_TM; m++) {
                for (int n = 0; n < V3_TN; n++) { acc[m][n] += a[m] * bb[n]; }
            }
        }
        __syncthreads();
    }
    for (int n = 0; n < V3_TN; n++) {
        int j = j0 + tn + n;
        if (j >= NHW) { continue; }
        int ww = j % W, h = (j / W) % H, img = j / (W * H);
        for (int m = 0; m < V3_TM; m++) {
            int c = c0 + tm + m;
            if (c < C) { dx[((img * C + c) * H + h) * W + ww] = acc[m][n]; }
        }
    }
}
