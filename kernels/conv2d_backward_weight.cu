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
