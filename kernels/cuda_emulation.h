// cuda_emulation.h: run an unchanged CUDA kernel file on a CPU, one OS thread per CUDA thread.
//
// kernels/emulator.py builds each .cu file as
//
//     #include "cuda_emulation.h"
//     #line 1 "conv2d_forward.cu"
//     <the .cu file, with its __shared__ declarations rewritten on the same line (see below)>
//     <one generated launcher per extern "C" __global__ function>
//
// with `g++ -std=c++20 -shared -fPIC -pthread` into a library that Python loads with ctypes.
//
// The model (what a CUDA programmer may assume, and nothing more):
//   * A launch runs blockDim.x*y*z OS threads per concurrent block (`concurrent`, default 1), each
//     with its own thread_local threadIdx. Each group of threads runs its share of the grid's blocks
//     one after another (optionally in reverse order); with concurrent > 1 blocks overlap, as on a
//     GPU, so races between blocks are real here too (ThreadSanitizer names them). blockIdx is
//     thread_local, blockDim and gridDim are globals for the launch.
//   * __syncthreads() is a barrier across the threads of the block. It also checks that every thread
//     waits at the SAME __syncthreads() (file and line): a barrier in divergent code, or a thread that
//     returned while the others wait, stops the launch with an error naming the lines.
//   * __shared__ arrays live in a buffer per block slot (one copy per running block). The Python
//     side rewrites
//         __shared__ float tile[16][17];
//     into
//         using tile__t = float[16][17]; static ::emu::SharedDecl tile__emu(sizeof(tile__t), alignof(tile__t));
//         tile__t& tile = *reinterpret_cast<tile__t*>(tile__emu.get("tile"));
//     Each launch places the arrays its kernel reaches and checks static + dynamic <= 48 KiB.
//     `extern __shared__ float buf[];` becomes a pointer to a buffer of exactly the launch's
//     shared_mem bytes. Both are filled with NaN before every block: reading shared memory that no
//     thread of this block wrote gives NaN, as garbage would on a GPU.
//   * Warp shuffles (__shfl_xor_sync, __shfl_down_sync, __shfl_sync) exchange values through a
//     BLOCK-wide barrier: every thread of the block must reach them together (stricter than CUDA,
//     where only the warp must). atomicAdd and friends use std::atomic_ref.
//
// What it cannot show: speed, coalescing, bank conflicts, occupancy, the GPU's intrinsics and
// reduction order, lock-step warps. (FMA contraction and flush-to-zero: numerics="gpu".)
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

// ---------------------------------------------------------------------------------------------
// Qualifiers: all functions are plain host functions.
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
#define __constant__ static

// ---------------------------------------------------------------------------------------------
// Vector types and the built-in variables.
struct uint3 { unsigned int x, y, z; };
struct dim3 {
    unsigned int x = 1, y = 1, z = 1;
    constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct alignas(8) float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }

inline thread_local uint3 threadIdx;   // this OS thread's CUDA thread index
inline thread_local uint3 blockIdx;    // the block this thread is running now
inline dim3 blockDim;                  // set by the launcher, the same for every thread
inline dim3 gridDim;
constexpr int warpSize = 32;

// ---------------------------------------------------------------------------------------------
// Math: the host libm stands in for CUDA's device math (so results differ in the last bits from
// the GPU's, and the fast intrinsics are exact here).
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, sizeof f); return f; }
inline int __float_as_int(float f) { int i; std::memcpy(&i, &f, sizeof i); return i; }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
template <class T> inline T __ldg(const T* p) { return *p; }
// CUDA's min/max are overloaded for each arithmetic type (both arguments of the same type).
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned int min(unsigned int a, unsigned int b) { return a < b ? a : b; }
inline unsigned int max(unsigned int a, unsigned int b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline float min(float a, float b) { return std::fmin(a, b); }
inline float max(float a, float b) { return std::fmax(a, b); }
inline double min(double a, double b) { return std::fmin(a, b); }
inline double max(double a, double b) { return std::fmax(a, b); }

// ---------------------------------------------------------------------------------------------
// Atomics: read-modify-write on ordinary memory through std::atomic_ref. They return the old value.
template <class T> inline T atomicAdd(T* address, T val) {
    return std::atomic_ref<T>(*address).fetch_add(val, std::memory_order_relaxed);
}
template <class T> inline T atomicSub(T* address, T val) {
    return std::atomic_ref<T>(*address).fetch_sub(val, std::memory_order_relaxed);
}
template <class T> inline T atomicExch(T* address, T val) {
    return std::atomic_ref<T>(*address).exchange(val, std::memory_order_relaxed);
}
template <class T> inline T atomicCAS(T* address, T compare, T val) {
    std::atomic_ref<T>(*address).compare_exchange_strong(compare, val, std::memory_order_relaxed);
    return compare;   // the old value, whether or not the swap happened
}
template <class T> inline T atomicMax(T* address, T val) {
    std::atomic_ref<T> a(*address);
    T old = a.load(std::memory_order_relaxed);
    while (old < val && !a.compare_exchange_weak(old, val, std::memory_order_relaxed)) {}
    return old;
}
template <class T> inline T atomicMin(T* address, T val) {
    std::atomic_ref<T> a(*address);
    T old = a.load(std::memory_order_relaxed);
    while (val < old && !a.compare_exchange_weak(old, val, std::memory_order_relaxed)) {}
    return old;
}
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }

// ---------------------------------------------------------------------------------------------
// The runtime: one launch at a time; within it, `concurrent` groups of threads, each running its
// own blocks at the same time (group g runs blocks g, g + concurrent, ...).
namespace emu {

constexpr unsigned int kShmemNaN = 0x7fc00000u;   // a quiet float NaN, the fill pattern
constexpr std::size_t kSharedLimit = 48 * 1024;   // static + dynamic bytes a block gets without opting in

inline void fill_nan(void* p, std::size_t bytes) {
    unsigned char* b = static_cast<unsigned char*>(p);
    for (std::size_t i = 0; i < bytes; ++i) b[i] = static_cast<unsigned char>(kShmemNaN >> (8 * (i % 4)));
}

// Where a thread waits: a __syncthreads() or shuffle (file, line), or the end of the kernel.
struct Site {
    const char* file = nullptr;
    int line = 0;
    const char* what = "";
    bool operator==(const Site& o) const { return line == o.line && what == o.what && file == o.file; }
};
inline const char kReturned[] = "returned from the kernel";

struct LaunchAborted {};   // thrown inside every thread once the launch has failed

// One block slot: the threads of one block at a time, their barrier and their shared memory.
struct Block {
    std::vector<Site> site;                  // where each thread of the block waits now
    std::vector<std::uint64_t> exchange;     // one slot per thread, for warp shuffles
    std::atomic<int> arrived{0};
    std::atomic<unsigned int> generation{0};
    std::vector<unsigned char> static_shared;    // the __shared__ arrays, laid out per launch
    std::vector<unsigned char> dynamic_shared;   // exactly shared_mem bytes (1 when 0)
    uint3 index{0, 0, 0};                        // the block it runs now
};

struct Launch {
    int nthreads = 0;                        // per block
    std::size_t dynamic_bytes = 0;
    std::vector<Block> blocks;               // one per concurrent group
    std::atomic<bool> aborted{false};
    std::mutex error_mutex;
    std::string error;
    std::mutex static_mutex;                 // the layout of the __shared__ arrays of this kernel
    std::vector<std::size_t> static_offset;  // by declaration id; SIZE_MAX: not placed yet
    std::size_t static_bytes = 0;
};
inline Launch* g_launch = nullptr;
inline thread_local int t_tid = 0;           // linear thread index in the block
inline thread_local Block* t_block = nullptr;

// A `__shared__ T name[...]` declaration (rewritten by kernels/_source.py into a SharedDecl and a
// reference into the block slot's static_shared buffer). Each gets an id once; each launch places
// the declarations its kernel reaches, one after another, and checks static + dynamic <= 48 KiB.
inline std::atomic<int> g_next_decl{0};
struct SharedDecl {
    int id;
    std::size_t bytes, align;
    SharedDecl(std::size_t bytes_, std::size_t align_) : id(g_next_decl.fetch_add(1)), bytes(bytes_), align(align_) {}
    void* get(const char* name);
};

// Record the first error and stop the launch: every thread throws LaunchAborted at its next barrier,
// and threads already waiting are woken to do so.
inline void fail(Launch& L, const std::string& message) {
    {
        std::lock_guard<std::mutex> lock(L.error_mutex);
        if (L.error.empty()) L.error = message;
    }
    L.aborted.store(true);
    for (auto& B : L.blocks) {
        B.generation.fetch_add(1);
        B.generation.notify_all();
    }
}

inline void* SharedDecl::get(const char* name) {
    Launch& L = *g_launch;
    std::size_t offset;
    {
        std::lock_guard<std::mutex> lock(L.static_mutex);
        if (L.static_offset.size() <= static_cast<std::size_t>(id)) L.static_offset.resize(id + 1, SIZE_MAX);
        if (L.static_offset[id] == SIZE_MAX) {
            std::size_t a = align < 16 ? 16 : align;
            L.static_offset[id] = (L.static_bytes + a - 1) / a * a;
            L.static_bytes = L.static_offset[id] + bytes;
            if (L.static_bytes + L.dynamic_bytes > kSharedLimit) {
                fail(L, "shared memory: " + std::to_string(L.static_bytes) + " bytes static (reaching __shared__ " +
                            name + ") + " + std::to_string(L.dynamic_bytes) + " bytes dynamic is over the 48 KiB "
                            "a block gets without opting in");
                throw LaunchAborted{};
            }
        }
        offset = L.static_offset[id];
    }
    return t_block->static_shared.data() + offset;
}

inline void* dynamic_shared() { return g_launch->dynamic_bytes ? t_block->dynamic_shared.data() : nullptr; }

inline void poison_shared(Launch& L, Block& B) {
    fill_nan(B.static_shared.data(), B.static_shared.size());
    fill_nan(B.dynamic_shared.data(), B.dynamic_shared.size());
}

inline std::string describe(const Site& s) {
    if (s.what == kReturned) return kReturned;
    return std::string(s.what) + " at " + (s.file ? s.file : "?") + ":" + std::to_string(s.line);
}

// Run by the last thread of a block to arrive: all its threads must wait at the same place.
inline void check_sites(Launch& L, Block& B) {
    const Site& first = B.site[0];
    bool same = true;
    for (int t = 1; t < L.nthreads && same; ++t) same = B.site[t] == first;
    if (same) {
        if (first.what == kReturned) poison_shared(L, B);   // block done: poison for the next
        return;
    }
    std::string msg = "block (" + std::to_string(B.index.x) + "," + std::to_string(B.index.y) + "," +
                      std::to_string(B.index.z) + "): the threads of a block must all reach the same "
                      "__syncthreads() (CUDA leaves anything else undefined); here they wait at different places:";
    std::vector<Site> seen;
    for (int t = 0; t < L.nthreads; ++t) {
        if (std::find(seen.begin(), seen.end(), B.site[t]) != seen.end()) continue;
        seen.push_back(B.site[t]);
        int count = 0;
        for (int u = 0; u < L.nthreads; ++u) count += B.site[u] == B.site[t];
        msg += "\n  " + std::to_string(count) + " thread(s) (the first is thread " + std::to_string(t) + "): " +
               describe(B.site[t]);
    }
    fail(L, msg);
}

// The barrier of the calling thread's block: an arrival counter and a generation number that
// waiting threads sleep on (std::atomic wait/notify: a futex on Linux).
inline void block_barrier(const Site& here) {
    Launch& L = *g_launch;
    Block& B = *t_block;
    if (L.aborted.load()) throw LaunchAborted{};
    B.site[t_tid] = here;
    unsigned int gen = B.generation.load(std::memory_order_acquire);
    if (L.aborted.load()) throw LaunchAborted{};   // fail() may have moved the generation on already
    if (B.arrived.fetch_add(1, std::memory_order_acq_rel) + 1 == L.nthreads) {
        B.arrived.store(0, std::memory_order_relaxed);
        check_sites(L, B);
        B.generation.fetch_add(1, std::memory_order_release);
        B.generation.notify_all();
    } else {
        while (B.generation.load(std::memory_order_acquire) == gen) B.generation.wait(gen, std::memory_order_acquire);
    }
    if (L.aborted.load()) throw LaunchAborted{};
}

inline void syncthreads(const char* file, int line) { block_barrier({file, line, "__syncthreads()"}); }

// A shuffle: every thread publishes its value, waits, reads its source lane's, waits again.
template <class T>
inline T shuffle_from(const char* file, int line, const char* what, T value, int src_lane, int width) {
    static_assert(sizeof(T) <= sizeof(std::uint64_t), "shuffles move values of at most 8 bytes");
    Launch& L = *g_launch;
    Block& B = *t_block;
    const int lane = t_tid % warpSize;
    if (width < 1 || width > warpSize || (width & (width - 1)) != 0) {
        fail(L, std::string(what) + ": width must be a power of 2 in 1..32");
        throw LaunchAborted{};
    }
    const int segment = lane - lane % width;                       // first lane of this width-segment
    const int src = (src_lane >= segment && src_lane < segment + width) ? src_lane : lane;
    const int src_tid = t_tid - lane + src;
    std::memcpy(&B.exchange[t_tid], &value, sizeof(T));
    block_barrier({file, line, what});
    if (src_tid >= L.nthreads) {   // a lane of the last, partial warp that does not exist
        fail(L, std::string(what) + " at " + file + ":" + std::to_string(line) + ": thread " +
                    std::to_string(t_tid) + " reads lane " + std::to_string(src) + " of its warp, past the " +
                    std::to_string(L.nthreads) + " threads of the block (undefined in CUDA; make blockDim a "
                    "multiple of 32)");
        throw LaunchAborted{};
    }
    T out;
    std::memcpy(&out, &B.exchange[src_tid], sizeof(T));
    block_barrier({file, line, what});
    return out;
}

inline void check_mask(const char* what, unsigned int mask) {
    if (mask != 0xffffffffu) {
        fail(*g_launch, std::string(what) + ": the emulator supports only the full mask 0xffffffff");
        throw LaunchAborted{};
    }
}

// The GPU's numerics (numerics="gpu"): CuPy compiles with -ftz=true, so subnormal floats are
// flushed to zero, as inputs and as results. On x86 that is MXCSR's FTZ and DAZ bits, per thread.
// (The other half, FMA contraction, is a compiler flag: see kernels/emulator.py.)
inline void set_flush_to_zero() {
#if defined(EMU_FLUSH_TO_ZERO) && (defined(__x86_64__) || defined(__i386__))
    unsigned int csr;
    __asm__ volatile("stmxcsr %0" : "=m"(csr));
    csr |= 0x8040u;                       // FTZ (bit 15) and DAZ (bit 6)
    __asm__ volatile("ldmxcsr %0" : : "m"(csr));
#elif defined(EMU_FLUSH_TO_ZERO) && defined(__aarch64__)
    unsigned long fpcr;
    __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
    fpcr |= (1ul << 24);                  // FZ
    __asm__ volatile("msr fpcr, %0" : : "r"(fpcr));
#endif
}

// ---------------------------------------------------------------------------------------------
// The launcher.
inline std::mutex g_launch_mutex;   // one launch at a time per library (blockDim is a global)

inline uint3 unflatten(unsigned long long i, const dim3& d) {
    return {static_cast<unsigned int>(i % d.x), static_cast<unsigned int>((i / d.x) % d.y),
            static_cast<unsigned int>(i / (static_cast<unsigned long long>(d.x) * d.y))};
}

// CUDA's launch limits (compute capability 8.x/9.x), checked before any thread starts.
inline std::string check_config(const dim3& g, const dim3& b, std::size_t shared_mem) {
    unsigned long long threads = 1ull * b.x * b.y * b.z;
    if (b.x == 0 || b.y == 0 || b.z == 0 || g.x == 0 || g.y == 0 || g.z == 0)
        return "invalid configuration: grid and block dimensions must all be >= 1";
    if (b.x > 1024 || b.y > 1024 || b.z > 64 || threads > 1024)
        return "invalid configuration: a block has at most 1024 threads (x, y <= 1024, z <= 64), got " +
               std::to_string(b.x) + "x" + std::to_string(b.y) + "x" + std::to_string(b.z);
    if (g.y > 65535 || g.z > 65535) return "invalid configuration: gridDim.y and gridDim.z must be <= 65535";
    if (shared_mem > kSharedLimit)
        return "invalid configuration: shared_mem " + std::to_string(shared_mem) +
               " bytes is over the 48 KiB a kernel gets without opting in";
    return "";
}

template <class... P, std::size_t... I>
inline void call_kernel(void (*kernel)(P...), void** args, std::index_sequence<I...>) {
    kernel(*static_cast<std::remove_cv_t<P>*>(args[I])...);   // args[i] points at parameter i's value
}

template <class... P>
inline void run_thread(void (*kernel)(P...), void** args, int group, int groups, int tid,
                       unsigned long long nblocks, bool reverse) {
    Launch& L = *g_launch;
    set_flush_to_zero();
    t_tid = tid;
    t_block = &L.blocks[group];
    threadIdx = unflatten(static_cast<unsigned long long>(tid), blockDim);
    try {
        for (unsigned long long i = group; i < nblocks; i += groups) {
            blockIdx = unflatten(reverse ? nblocks - 1 - i : i, gridDim);
            if (tid == 0) t_block->index = blockIdx;      // for messages; read after a barrier
            call_kernel(kernel, args, std::index_sequence_for<P...>{});
            block_barrier({nullptr, 0, kReturned});
        }
    } catch (LaunchAborted&) {
    } catch (std::exception& e) {
        fail(L, std::string("a thread threw: ") + e.what());
    }
}

// The launch: kernel<<<grid, block, shared_mem>>>(args...), with `concurrent` blocks at a time.
// Returns 0, or 1 with a message in err.
template <class... P>
inline int launch(void (*kernel)(P...), const unsigned int* grid, const unsigned int* block,
                  std::size_t shared_mem, int reverse, int concurrent, void** args, char* err, std::size_t err_len) {
    std::lock_guard<std::mutex> lock(g_launch_mutex);
    dim3 g(grid[0], grid[1], grid[2]), b(block[0], block[1], block[2]);
    std::string problem = check_config(g, b, shared_mem);
    if (problem.empty()) {
        gridDim = g;
        blockDim = b;
        const unsigned long long nblocks = 1ull * g.x * g.y * g.z;
        const int groups = static_cast<int>(std::max(1ull, std::min<unsigned long long>(concurrent, nblocks)));
        Launch L;
        L.nthreads = static_cast<int>(b.x * b.y * b.z);
        L.dynamic_bytes = shared_mem;
        L.blocks = std::vector<Block>(groups);
        for (auto& B : L.blocks) {
            B.site.resize(L.nthreads);
            B.exchange.resize(L.nthreads);
            B.static_shared.resize(kSharedLimit);
            // Exactly shared_mem bytes, so that AddressSanitizer sees an overrun (1 byte when 0).
            B.dynamic_shared.resize(shared_mem ? shared_mem : 1);
            poison_shared(L, B);
        }
        g_launch = &L;
        std::vector<std::thread> threads;
        threads.reserve(static_cast<std::size_t>(L.nthreads) * groups);
        try {
            for (int grp = 0; grp < groups; ++grp)
                for (int t = 0; t < L.nthreads; ++t)
                    threads.emplace_back(run_thread<P...>, kernel, args, grp, groups, t, nblocks, reverse != 0);
        } catch (std::system_error& e) {
            fail(L, std::string("could not start the block's threads: ") + e.what());
        }
        for (auto& t : threads) t.join();
        g_launch = nullptr;
        problem = L.error;
    }
    if (problem.empty()) return 0;
    std::snprintf(err, err_len, "%s", problem.c_str());
    return 1;
}

}  // namespace emu

// ---------------------------------------------------------------------------------------------
// The CUDA names, as macros so that each barrier knows its file and line.
#define __syncthreads() ::emu::syncthreads(__FILE__, __LINE__)
#define __syncwarp(...) ::emu::syncthreads(__FILE__, __LINE__)
#define __shfl_xor_sync(mask, value, lane_mask, ...)                                                  \
    (::emu::check_mask("__shfl_xor_sync", mask),                                                      \
     ::emu::shuffle_from(__FILE__, __LINE__, "__shfl_xor_sync", value,                                \
                         (::emu::t_tid % warpSize) ^ (lane_mask), ::emu::width_or_32(__VA_ARGS__)))
#define __shfl_down_sync(mask, value, delta, ...)                                                     \
    (::emu::check_mask("__shfl_down_sync", mask),                                                     \
     ::emu::shuffle_from(__FILE__, __LINE__, "__shfl_down_sync", value,                               \
                         (::emu::t_tid % warpSize) + (delta), ::emu::width_or_32(__VA_ARGS__)))
#define __shfl_sync(mask, value, src_lane, ...)                                                       \
    (::emu::check_mask("__shfl_sync", mask),                                                          \
     ::emu::shuffle_from(__FILE__, __LINE__, "__shfl_sync", value,                                    \
                         ((::emu::t_tid % warpSize) - (::emu::t_tid % warpSize) %                      \
                          ::emu::width_or_32(__VA_ARGS__)) + (src_lane) % ::emu::width_or_32(__VA_ARGS__), \
                         ::emu::width_or_32(__VA_ARGS__)))

namespace emu {
inline int width_or_32() { return warpSize; }
inline int width_or_32(int width) { return width; }
}  // namespace emu
