// Element-wise steps of a BERT layer on CUDA for recbench's candle backend, each one pass over
// memory where candle's ops take two or more (compiled to PTX by build.rs, feature `cuda`,
// loaded with candle's custom-function API; the Rust side is src/backend/candle/device_ops.rs).
// Profiled with Nsight Compute on an H200 (MiniLM fp16, batch 256), candle's broadcast add of a
// linear's bias took 48% of the GPU's time and its strided copies of Q, K, V and the context
// 17%, where the GEMMs took 7%.
//
// Every kernel walks its elements with a grid-stride loop and computes in f32.
#include <cuda_fp16.h>
#if __CUDA_ARCH__ >= 800
#include <cuda_bf16.h>
#endif
#include <stdint.h>

__device__ __forceinline__ float as_f32(float v) { return v; }
__device__ __forceinline__ float as_f32(__half v) { return __half2float(v); }
__device__ __forceinline__ void put(float *p, float v) { *p = v; }
__device__ __forceinline__ void put(__half *p, float v) { *p = __float2half(v); }
#if __CUDA_ARCH__ >= 800
__device__ __forceinline__ float as_f32(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ void put(__nv_bfloat16 *p, float v) { *p = __float2bfloat16(v); }
#endif

#define GRID_STRIDE(i, count)                                                                  \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (count);                \
         i += (size_t)blockDim.x * gridDim.x)

// out = act(y + bias) + res, for y and out `[rows, n]` (count = rows × n), bias `[n]`; act is
// the identity or GELU (erf form, as BERT's); res may be null.
template <typename T>
__device__ void bias_act(const T *y, const T *bias, const T *res, T *out, size_t count,
                         uint32_t n, uint32_t gelu) {
    GRID_STRIDE(i, count) {
        float x = as_f32(y[i]) + as_f32(bias[i % n]);
        if (gelu) x = 0.5f * x * (1.0f + erff(x * 0.7071067811865475f));
        if (res) x += as_f32(res[i]);
        put(&out[i], x);
    }
}

// The fused Q, K, V projection `[batch, seq, 3, heads, width]` split into one tensor
// `[3, batch, heads, seq, width]`, with Q multiplied by `scale` on its way.
template <typename T>
__device__ void split_heads(const T *qkv, T *out, uint32_t b, uint32_t s, uint32_t nh,
                            uint32_t hd, float scale) {
    const size_t per = (size_t)b * s * nh * hd;
    GRID_STRIDE(i, 3 * per) {
        const uint32_t d = i % hd;
        size_t r = i / hd;
        const uint32_t h = r % nh;
        r /= nh;
        const uint32_t t = r % 3;
        r /= 3;
        const uint32_t si = r % s;
        const uint32_t bi = r / s;
        float v = as_f32(qkv[i]);
        if (t == 0) v *= scale;
        put(&out[t * per + (((size_t)bi * nh + h) * s + si) * hd + d], v);
    }
}

// Attention context `[batch, heads, seq, width]` back to `[batch, seq, heads, width]`.
template <typename T>
__device__ void merge_heads(const T *ctx, T *out, uint32_t b, uint32_t s, uint32_t nh,
                            uint32_t hd) {
    GRID_STRIDE(i, (size_t)b * s * nh * hd) {
        const uint32_t d = i % hd;
        size_t r = i / hd;
        const uint32_t h = r % nh;
        r /= nh;
        const uint32_t si = r % s;
        const uint32_t bi = r / s;
        out[i] = ctx[(((size_t)bi * nh + h) * s + si) * hd + d];
    }
}

#define LAYER_OPS(T, SUFFIX)                                                                   \
    extern "C" __global__ void bias_act_##SUFFIX(const T *y, const T *bias, const T *res,      \
                                                 T *out, size_t count, uint32_t n,             \
                                                 uint32_t gelu) {                              \
        bias_act<T>(y, bias, res, out, count, n, gelu);                                        \
    }                                                                                          \
    extern "C" __global__ void split_heads_##SUFFIX(const T *qkv, T *out, uint32_t b,          \
                                                    uint32_t s, uint32_t nh, uint32_t hd,      \
                                                    float scale) {                             \
        split_heads<T>(qkv, out, b, s, nh, hd, scale);                                         \
    }                                                                                          \
    extern "C" __global__ void merge_heads_##SUFFIX(const T *ctx, T *out, uint32_t b,          \
                                                    uint32_t s, uint32_t nh, uint32_t hd) {    \
        merge_heads<T>(ctx, out, b, s, nh, hd);                                                \
    }

LAYER_OPS(float, f32)
LAYER_OPS(__half, f16)
#if __CUDA_ARCH__ >= 800
LAYER_OPS(__nv_bfloat16, bf16)
#endif
