// Top-k of each row of a score matrix, on the GPU: recbench's candle backend scores a batch of
// users against the item catalog with candle's matmul, then calls these kernels so that only
// each row's k best (item, score) pairs leave the device. Compiled to PTX by build.rs (feature
// `cuda`) and loaded with candle's custom-function API.
//
// One block per row. Each thread walks the row with a block-wide stride and keeps its own k
// best in registers (insertion into a sorted list of at most TOPK_MAX); then k rounds of a
// block-wide arg-max over the threads' current heads take the winners in order, the winning
// thread moving to its next. A score is better when it is larger, or equal with a lower column:
// the order host scoring uses, so ties resolve alike. NaN is never better than anything.
#include <cuda_fp16.h>
#if __CUDA_ARCH__ >= 800
#include <cuda_bf16.h>
#endif
#include <stdint.h>

#define TOPK_MAX 32
#define NO_COLUMN 0xffffffffu

__device__ __forceinline__ float as_f32(float v) { return v; }
__device__ __forceinline__ float as_f32(__half v) { return __half2float(v); }
#if __CUDA_ARCH__ >= 800
__device__ __forceinline__ float as_f32(__nv_bfloat16 v) { return __bfloat162float(v); }
#endif

__device__ __forceinline__ bool better(float a, uint32_t ia, float b, uint32_t ib) {
    return a > b || (a == b && ia < ib);
}

// The best (score, column) among a warp's lanes, with the lane's thread: left in lane 0.
__device__ __forceinline__ void warp_best(float &v, uint32_t &c, uint32_t &t) {
    for (uint32_t off = 16; off > 0; off /= 2) {
        float ov = __shfl_down_sync(0xffffffffu, v, off);
        uint32_t oc = __shfl_down_sync(0xffffffffu, c, off);
        uint32_t ot = __shfl_down_sync(0xffffffffu, t, off);
        if (better(ov, oc, v, c)) {
            v = ov;
            c = oc;
            t = ot;
        }
    }
}

template <typename T>
__device__ void top_k_rows(const T *scores, uint32_t n, uint32_t k, uint32_t *out_cols,
                           float *out_scores) {
    const T *row = scores + (size_t)blockIdx.x * n;
    float v[TOPK_MAX];
    uint32_t c[TOPK_MAX];
    for (uint32_t i = 0; i < k; i++) {
        v[i] = -INFINITY;
        c[i] = NO_COLUMN;
    }
    for (uint32_t j = threadIdx.x; j < n; j += blockDim.x) {
        float s = as_f32(row[j]);
        if (!better(s, j, v[k - 1], c[k - 1])) continue;
        uint32_t p = k - 1;
        while (p > 0 && better(s, j, v[p - 1], c[p - 1])) {
            v[p] = v[p - 1];
            c[p] = c[p - 1];
            p--;
        }
        v[p] = s;
        c[p] = j;
    }

    __shared__ float warp_v[32];
    __shared__ uint32_t warp_c[32];
    __shared__ uint32_t warp_t[32];
    __shared__ uint32_t winner;
    const uint32_t lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const uint32_t warps = (blockDim.x + 31) / 32;
    uint32_t head = 0;
    for (uint32_t r = 0; r < k; r++) {
        float bv = head < k ? v[head] : -INFINITY;
        uint32_t bc = head < k ? c[head] : NO_COLUMN;
        uint32_t bt = threadIdx.x;
        warp_best(bv, bc, bt);
        if (lane == 0) {
            warp_v[warp] = bv;
            warp_c[warp] = bc;
            warp_t[warp] = bt;
        }
        __syncthreads();
        if (warp == 0) {
            bv = lane < warps ? warp_v[lane] : -INFINITY;
            bc = lane < warps ? warp_c[lane] : NO_COLUMN;
            bt = lane < warps ? warp_t[lane] : 0;
            warp_best(bv, bc, bt);
            if (lane == 0) {
                out_scores[(size_t)blockIdx.x * k + r] = bv;
                out_cols[(size_t)blockIdx.x * k + r] = bc;
                winner = bt;
            }
        }
        __syncthreads();
        if (threadIdx.x == winner) head++;
        __syncthreads();
    }
}

// blockDim.x must be a multiple of 32 (all lanes take part in the shuffles); 1 <= k <= TOPK_MAX.
#define TOP_K_ROWS(T, NAME)                                                                     \
    extern "C" __global__ void NAME(const T *scores, uint32_t n, uint32_t k, uint32_t *out_cols, \
                                    float *out_scores) {                                        \
        top_k_rows<T>(scores, n, k, out_cols, out_scores);                                      \
    }

TOP_K_ROWS(float, top_k_rows_f32)
TOP_K_ROWS(__half, top_k_rows_f16)
#if __CUDA_ARCH__ >= 800
TOP_K_ROWS(__nv_bfloat16, top_k_rows_bf16)
#endif
