// Tiny kernels with bugs planted on purpose, and correct twins: the tests check that the emulator,
// AddressSanitizer, UndefinedBehaviorSanitizer or ThreadSanitizer catches each bug.
// The tests find the lines of the bugs by the BUG markers below; keep one per line.

// correct: reverse each block's slice through shared memory
extern "C" __global__ void reverse_ok(const float* in, float* out, int n) {
    __shared__ float s[64];
    int t = threadIdx.x;
    int i = blockIdx.x * blockDim.x + t;
    s[t] = i < n ? in[i] : 0.0f;
    __syncthreads();
    if (i < n) { out[i] = s[blockDim.x - 1 - t]; }
}

// bug: no __syncthreads() between writing and reading shared memory (a data race)
extern "C" __global__ void reverse_missing_sync(const float* in, float* out, int n) {
    __shared__ float s[64];
    int t = threadIdx.x;
    int i = blockIdx.x * blockDim.x + t;
    s[t] = i < n ? in[i] : 0.0f;
    if (i < n) { out[i] = s[blockDim.x - 1 - t]; }   // BUG: missing_sync
}

// bug: `<=` where `<` belongs (reads and writes one element past the end)
extern "C" __global__ void copy_off_by_one(const float* in, float* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i <= n) { out[i] = in[i]; }                   // BUG: off_by_one
}

// bug: a block of more than 32 threads writes a 32-element shared array
extern "C" __global__ void shared_overrun(const float* in, float* out, int n) {
    __shared__ float s[32];
    int t = threadIdx.x;
    s[t] = in[t];                                     // BUG: shared_overrun
    __syncthreads();
    if (t < n) { out[t] = s[t % 32]; }
}

// bug: a float4 load from an address that is not a multiple of 16 bytes
extern "C" __global__ void misaligned_float4(const float* in, float* out, int n) {
    int t = threadIdx.x;
    float4 v = reinterpret_cast<const float4*>(in + 1)[t];   // BUG: misaligned
    if (4 * t + 3 < n) { out[4 * t] = v.x; out[4 * t + 1] = v.y; out[4 * t + 2] = v.z; out[4 * t + 3] = v.w; }
}

// bug: __syncthreads() in code that only some threads of the block run
extern "C" __global__ void divergent_barrier(const float* in, float* out, int n) {
    int t = threadIdx.x;
    if (t < 16) {
        __syncthreads();                              // BUG: divergent_barrier
    }
    if (t < n) { out[t] = in[t]; }
}

// bug: threads past the end return, the others then wait at a barrier
extern "C" __global__ void return_before_barrier(const float* in, float* out, int n) {
    __shared__ float s[64];
    int t = threadIdx.x;
    if (t >= n) { return; }                           // BUG: early_return
    s[t] = in[t];
    __syncthreads();                                  // BUG: waits_for_returned
    out[t] = s[n - 1 - t];
}

// bug: the last element is never written
extern "C" __global__ void forgets_last(const float* in, float* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n - 1) { out[i] = in[i]; }                // BUG: forgets_last
}

// bug: block b reads what block b-1 wrote: right only if blocks run in order
extern "C" __global__ void depends_on_block_order(float* out, int n) {
    int b = blockIdx.x;
    if (threadIdx.x == 0 && b < n) { out[b] = b == 0 ? 1.0f : out[b - 1] + 1.0f; }   // BUG: order
}

// reads shared memory that this block never wrote: NaN in the emulator (garbage on a GPU)
extern "C" __global__ void reads_stale_shared(float* out, int n) {
    __shared__ float s[64];
    extern __shared__ float dyn[];
    int t = threadIdx.x;
    if (blockIdx.x == 0) { s[t] = 1.0f; dyn[t] = 2.0f; }   // only the first block writes
    __syncthreads();
    out[2 * (blockIdx.x * blockDim.x + t)] = s[t];
    out[2 * (blockIdx.x * blockDim.x + t) + 1] = dyn[t];
}

// correct: a block sum with warp shuffles, then shared memory across warps
extern "C" __global__ void block_sum_shuffle(const float* in, float* out, int n) {
    __shared__ float warp_sums[32];
    int t = threadIdx.x;
    float v = t < n ? in[t] : 0.0f;
    for (int offset = 16; offset > 0; offset /= 2) { v += __shfl_down_sync(0xffffffff, v, offset); }
    if (t % 32 == 0) { warp_sums[t / 32] = v; }
    __syncthreads();
    if (t == 0) {
        float total = 0.0f;
        for (int w = 0; w < (int)(blockDim.x + 31) / 32; w++) { total += warp_sums[w]; }
        out[0] = total;
    }
}

// correct: the butterfly (xor) shuffle leaves every lane with its warp's sum
extern "C" __global__ void warp_allreduce_xor(const float* in, float* out, int n) {
    int t = threadIdx.x;
    float v = t < n ? in[t] : 0.0f;
    for (int mask = 16; mask > 0; mask /= 2) { v += __shfl_xor_sync(0xffffffff, v, mask); }
    if (t < n) { out[t] = v; }
}

// correct: every thread of every block adds 1 to one counter
extern "C" __global__ void count_threads(int* counter) {
    atomicAdd(counter, 1);
}

// bug: every block adds into out[0] without an atomic: a race between blocks (lost updates on a GPU)
extern "C" __global__ void cross_block_race(const float* in, float* out, int n) {
    if (threadIdx.x == 0) { out[0] = out[0] + 1.0f; }   // BUG: cross_block_race
}

// numerics probe: out[0] = a*b + c (one rounding with FMA, two without); out[1] = a subnormal times 1
extern "C" __global__ void numerics_probe(const float* in, float* out, int n) {
    if (threadIdx.x == 0) {
        out[0] = in[0] * in[1] + in[2];
        out[1] = in[3] * in[4];
    }
}

// bug: 32 KiB of static shared memory, launched with more than 16 KiB of dynamic shared memory
extern "C" __global__ void too_much_shared(const float* in, float* out, int n) {
    __shared__ float big[8192];                       // BUG: too_much_shared
    extern __shared__ float dyn[];
    int t = threadIdx.x;
    big[t] = in[t];
    dyn[t] = in[t];
    __syncthreads();
    if (t < n) { out[t] = big[t] + dyn[t]; }
}
