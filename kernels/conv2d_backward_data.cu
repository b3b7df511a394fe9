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
