// Native helpers of the torch backend's linear layers; tch has no binding for any of them.
// (1) PyTorch's own dynamic int8 linear: quantized::linear_prepack once per layer (FBGEMM packs
// the int8 weight and its column offsets) and quantized::linear_dynamic per call (activations
// quantized per tensor on the fly, int8 GEMM, result in f32 with the bias), what
// torch.ao.quantization.quantize_dynamic runs for nn.Linear on x86, called through the
// dispatcher, boxed. (2) The per-row activation quantization and the rescaling epilogue around
// `_int_mm`, each one parallel pass. (3) FBGEMM's int8 GEMM (the one quantize_dynamic runs, with
// its prepacked weight) on activations quantized per row instead of per tensor: libtorch ships
// FBGEMM's headers and exports the instantiation used here. (4) oneDNN's fp32 linear on a weight
// reordered once (see recbench_onednn_pack). (5) oneDNN's int8 linear (onednn::qlinear_pointwise,
// the op PyTorch's Inductor runs for x86 int8: AMX tiles where the CPU has them) on activations
// quantized per row to u8 with a zero point.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>
#include <fbgemm/Fbgemm.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <vector>

namespace {
char* copy_message(const char* what) {
  return strdup(what ? what : "unknown C++ exception");
}

// What every extern function below returns: `f()`, or `failed` with *err set (free() it) when
// `f` throws; no C++ exception crosses into Rust.
template <class T, class F>
T guarded(char** err, T failed, F&& f) {
  try {
    return f();
  } catch (const std::exception& e) {
    *err = copy_message(e.what());
  } catch (...) {
    *err = copy_message(nullptr);
  }
  return failed;
}

// One boxed call of the dispatcher's `op` on `args`: its first result.
c10::IValue call_boxed(const c10::OperatorHandle& op, std::vector<c10::IValue> args) {
  torch::jit::Stack stack(std::move(args));
  op.callBoxed(&stack);
  return std::move(stack.at(0));
}
// A weight prepacked for FBGEMM with what the per-row path needs beside it.
struct RowsLinear {
  std::unique_ptr<fbgemm::PackBMatrix<int8_t>> packed;
  std::vector<int32_t> col_sums;  // Σ_i W[c, i]: removes the activations' zero point
  std::vector<int32_t> zeros;     // the weight's zero points (symmetric: 0)
  std::vector<float> scales, bias;
  int64_t k = 0, n = 0;
  // 8-bit activations where FBGEMM multiplies with VNNI (32-bit accumulation); 7-bit elsewhere:
  // its AVX2 kernel sums pairs of u8 × s8 products in 16 bits (vpmaddubsw), which saturate above
  // 2 × 127 × 127, the reason PyTorch quantizes activations to 7 bits on x86.
  bool eight_bit = false;
};

// Rows per block: quantized, multiplied and rescaled while the block is in cache.
constexpr int64_t kRowsBlock = 64;

// The per-row loops below are compiled three times (x86-64-v4: AVX-512; v3: AVX2; the x86-64
// baseline: SSE2) and the CPU picks its version when the library loads; the build's own target
// is the baseline, which runs them 4 floats at a time. Every version computes the same bits:
// build.rs turns off FMA contraction, and the rest is exact (max, IEEE division, the rounding
// trick below).
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define RECBENCH_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define RECBENCH_CLONES
#endif

// max |x[i]|, 0 for k = 0. On the bit patterns with the sign cleared, whose integer order is the
// order of the values: an integer max reduction vectorises where a float one (without
// -ffast-math) does not. A NaN compares above infinity and so comes out as the maximum, as
// ATen's amax propagates it.
RECBENCH_CLONES float abs_max(const float* x, int64_t k) {
  uint32_t m = 0;
  for (int64_t i = 0; i < k; ++i) {
    uint32_t b;
    std::memcpy(&b, x + i, sizeof b);
    b &= 0x7fffffffu;
    m = b > m ? b : m;
  }
  float f;
  std::memcpy(&f, &m, sizeof f);
  return f;
}

// round-half-even(x / s) clamped to ±qmax, plus `zero`. |x / s| ≤ qmax < 2^22, so adding and
// subtracting 1.5·2^23 rounds half to even exactly as nearbyint does, without the libm call
// nearbyint is on the x86-64 baseline: the loop vectorises.
RECBENCH_CLONES void quantize_s8(const float* x, float s, int64_t k, int8_t* q) {
  for (int64_t i = 0; i < k; ++i) {
    const float v = (x[i] / s + 12582912.f) - 12582912.f;
    q[i] = static_cast<int8_t>(std::min(127.f, std::max(-127.f, v)));
  }
}

RECBENCH_CLONES void quantize_u8(const float* x, float s, float qmax, int32_t zero, int64_t k,
                                 uint8_t* q) {
  for (int64_t i = 0; i < k; ++i) {
    const float v = (x[i] / s + 12582912.f) - 12582912.f;
    q[i] = static_cast<uint8_t>(static_cast<int32_t>(std::min(qmax, std::max(-qmax, v))) + zero);
  }
}

// y[c] = a[c] · x · w[c] + b[c], multiplied in that order.
RECBENCH_CLONES void rescale_row(const int32_t* a, float x, const float* w, const float* b,
                                 int64_t n, float* y) {
  for (int64_t c = 0; c < n; ++c) y[c] = static_cast<float>(a[c]) * x * w[c] + b[c];
}

// y[c] = y[c] · s + b[c].
RECBENCH_CLONES void scale_bias_row(float* y, float s, const float* b, int64_t n) {
  for (int64_t c = 0; c < n; ++c) y[c] = y[c] * s + b[c];
}

// Symmetric per-row int8 of the f32 rows x [rows, k] into q, one parallel pass:
// s[r] = max(max|x[r, :]|, 1e-12) / 127, q[r, i] = clamp(round-half-even(x[r, i] / s[r]), ±127).
void quantize_rows_s8(const float* x, int64_t rows, int64_t k, int8_t* q, float* s) {
  at::parallel_for(0, rows, 8, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* xr = x + r * k;
      const float sc = std::max(abs_max(xr, k), 1e-12f) / 127.f;
      s[r] = sc;
      quantize_s8(xr, sc, k, q + r * k);
    }
  });
}

// A float's bits as an int32 in the order of the values (negative floats have their magnitude
// bits flipped): an integer min/max reduction vectorises where a float one (without
// -ffast-math) does not. NaNs land beyond the infinities, so they come out as an extreme.
inline int32_t ordered(float f) {
  int32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b ^ ((b >> 31) & 0x7fffffff);
}

inline float unordered(int32_t k) {
  const int32_t b = k ^ ((k >> 31) & 0x7fffffff);
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f;
}

// The range of x[0..k] widened to hold 0: lo ≤ 0 ≤ hi.
RECBENCH_CLONES void range0(const float* x, int64_t k, float* lo, float* hi) {
  int32_t mn = 0, mx = 0;  // ordered(0.f) == 0
  for (int64_t i = 0; i < k; ++i) {
    const int32_t o = ordered(x[i]);
    mn = o < mn ? o : mn;
    mx = o > mx ? o : mx;
  }
  *lo = unordered(mn);
  *hi = unordered(mx);
}

// q[i] = clamp(round-half-even(x[i] / s) + zero, 0, 255).
RECBENCH_CLONES void quantize_u8_affine(const float* x, float s, float zero, int64_t k,
                                        uint8_t* q) {
  for (int64_t i = 0; i < k; ++i) {
    const float v = ((x[i] / s + 12582912.f) - 12582912.f) + zero;
    q[i] = static_cast<uint8_t>(std::min(255.f, std::max(0.f, v)));
  }
}

// y[c] = (y[c] − zero · cw[c]) · s + b[c].
RECBENCH_CLONES void unshift_scale_bias_row(float* y, float zero, const float* cw, float s,
                                            const float* b, int64_t n) {
  for (int64_t c = 0; c < n; ++c) y[c] = (y[c] - zero * cw[c]) * s + b[c];
}

// Asymmetric u8 of one f32 row x[0..k] into q: the row's range widened to hold 0 in 255 steps,
// scale s = max((hi − lo) / 255, 1e-12), zero point z = round-half-even(−lo / s) (so 0 is
// exact), q = clamp(round(x / s) + z, 0, 255). A one-sided row (GELU's outputs, mostly ≥ −0.17)
// keeps all 256 levels where a symmetric scale leaves half of them unused.
void quantize_row_u8(const float* x, int64_t k, uint8_t* q, float* s, float* z) {
  float lo, hi;
  range0(x, k, &lo, &hi);
  const float sc = std::max((hi - lo) / 255.f, 1e-12f);
  *s = sc;
  *z = std::min(255.f, (-lo / sc + 12582912.f) - 12582912.f);
  quantize_u8_affine(x, sc, *z, k, q);
}

// quantize_row_u8 of every row of the f32 rows x [rows, k], one parallel pass.
void quantize_rows_u8(const float* x, int64_t rows, int64_t k, uint8_t* q, float* s, float* z) {
  at::parallel_for(0, rows, 8, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) quantize_row_u8(x + r * k, k, q + r * k, s + r, z + r);
  });
}

// Σ v[0..n] in 16 running sums (a float sum in one running total does not vectorise without
// -ffast-math; sixteen independent ones do).
RECBENCH_CLONES float sum16(const float* v, int64_t n) {
  float acc[16] = {0};
  int64_t c = 0;
  for (; c + 16 <= n; c += 16)
    for (int j = 0; j < 16; ++j) acc[j] += v[c + j];
  float t = 0;
  for (int j = 0; j < 16; ++j) t += acc[j];
  for (; c < n; ++c) t += v[c];
  return t;
}

// Σ (v[c] − m)², likewise.
RECBENCH_CLONES float sq_dev16(const float* v, float m, int64_t n) {
  float acc[16] = {0};
  int64_t c = 0;
  for (; c + 16 <= n; c += 16)
    for (int j = 0; j < 16; ++j) {
      const float d = v[c + j] - m;
      acc[j] += d * d;
    }
  float t = 0;
  for (int j = 0; j < 16; ++j) t += acc[j];
  for (; c < n; ++c) t += (v[c] - m) * (v[c] - m);
  return t;
}

// y[c] += r[c].
RECBENCH_CLONES void add_row(float* y, const float* r, int64_t n) {
  for (int64_t c = 0; c < n; ++c) y[c] += r[c];
}

// y[c] = (y[c] − m) · rstd · w[c] + b[c].
RECBENCH_CLONES void normalize_row(float* y, float m, float rstd, const float* w, const float* b,
                                   int64_t n) {
  for (int64_t c = 0; c < n; ++c) y[c] = (y[c] - m) * rstd * w[c] + b[c];
}

// y[c] = GELU(y[c]) = y[c] / 2 · (1 + erf(y[c] / √2)), libtorch's exact (erf) GELU. erf as ATen's
// vectorised one computes it (Abramowitz and Stegun 7.1.26, absolute error under 1.5e-7), its
// exp(−z²) Cephes expf's reduction and polynomial with the power of two set in the exponent
// bits: no libm call, so the loop vectorises (expf in the loop would keep it scalar). The
// fused-layer test holds it to libtorch's `gelu` within 2e-6 of the largest value, over ±12 and
// near 0. Unlike the loops above it is not bit-matched to an ATen chain, so it may fuse
// multiply-adds (as ATen's own GELU does): the AVX2 and AVX-512 versions then differ from the
// baseline's in the last bits.
#pragma GCC push_options
#pragma GCC optimize("fp-contract=fast")
RECBENCH_CLONES void gelu_row(float* y, int64_t n) {
  for (int64_t c = 0; c < n; ++c) {
    const float x = y[c];
    uint32_t xb;
    std::memcpy(&xb, &x, sizeof xb);
    const uint32_t sign = xb & 0x80000000u, mag = xb & 0x7fffffffu;
    float ax;
    std::memcpy(&ax, &mag, sizeof ax);
    const float a = ax * 0.70710678118654752f;  // |z|, z = x / √2
    const float t = 1.f / (1.f + 0.3275911f * a);
    const float r =
        t * (0.254829592f +
             t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
    // exp(v), v = −z², clamped at −30: beyond it 1 − r · exp(v) is 1 exactly (as it is from
    // |z| ≈ 4 on), while a lower clamp lets r · exp(v) fall to a subnormal float, which costs a
    // microcode assist.
    const float v = std::max(-a * a, -30.f);
    const float k = (v * 1.44269504088896341f + 12582912.f) - 12582912.f;  // round(v / ln 2)
    const float f = (v - k * 0.693359375f) + k * 2.12194440e-4f;
    const float poly =
        (((((((1.9875691500e-4f * f + 1.3981999507e-3f) * f + 8.3334519073e-3f) * f +
             4.1665795894e-2f) *
                f +
            1.6666665459e-1f) *
               f +
           5.0000001201e-1f) *
          f) *
         f) +
        f + 1.f;
    const int32_t bits = (static_cast<int32_t>(k) + 127) << 23;  // 2^k
    float two_k;
    std::memcpy(&two_k, &bits, sizeof two_k);
    const float erf_a = 1.f - r * (poly * two_k);
    uint32_t eb;
    std::memcpy(&eb, &erf_a, sizeof eb);
    eb |= sign;  // erf is odd
    float erf_z;
    std::memcpy(&erf_z, &eb, sizeof erf_z);
    y[c] = 0.5f * x * (1.f + erf_z);
  }
}
#pragma GCC pop_options

// An int8 weight in oneDNN's blocked layout (onednn::qlinear_prepack) with its scales, zero
// points (symmetric: 0), bias, and each column's Σ_i W[c, i] · scale[c] (removes the
// activations' zero point).
// The split of onednn_rows' time (recbench_int8_split): nanoseconds in quantizing, oneDNN's
// matmul and the epilogue, summed over calls while on.
std::atomic<bool> g_split_on{false};
std::atomic<int64_t> g_split_ns[3];

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct OnednnInt8 {
  at::Tensor packed, scales, zeros;
  std::vector<float> bias, col_scaled;
  int64_t k = 0, n = 0;
};
}  // namespace

extern "C" {

// Packs `qweight` (a qint8 tensor, per tensor or per output channel) with the f32 `bias` (may be
// null). Returns an opaque handle for recbench_linear_dynamic, or null with *err set (free()).
void* recbench_linear_prepack(const at::Tensor* qweight, const at::Tensor* bias, char** err) {
  return guarded<void*>(err, nullptr, [&]() -> void* {
    static auto op =
        c10::Dispatcher::singleton().findSchemaOrThrow("quantized::linear_prepack", "");
    return new c10::IValue(call_boxed(op, {*qweight, bias ? c10::IValue(*bias) : c10::IValue()}));
  });
}

// y = x · Wᵀ + b for the f32 `input` [rows, in] and a packed weight; `reduce_range` quantizes
// activations to 7 bits, as PyTorch does on x86 (no overflow in the VPMADDUBSW path).
at::Tensor* recbench_linear_dynamic(const at::Tensor* input, void* packed, bool reduce_range,
                                    char** err) {
  return guarded<at::Tensor*>(err, nullptr, [&]() -> at::Tensor* {
    static auto op =
        c10::Dispatcher::singleton().findSchemaOrThrow("quantized::linear_dynamic", "");
    return new at::Tensor(
        call_boxed(op, {*input, *static_cast<c10::IValue*>(packed), reduce_range}).toTensor());
  });
}

void recbench_linear_free(void* packed) { delete static_cast<c10::IValue*>(packed); }

// Symmetric per-row int8 of the contiguous f32 `x` [rows, k] in one parallel pass:
// s[r] = max(max|x[r, :]|, 1e-12) / 127, q[r, i] = clamp(round-half-even(x[r, i] / s[r]), ±127):
// the same arithmetic as the ATen chain abs → amax → clamp_min → div → div → round → clamp → to
// int8 that it replaces (eight passes and as many temporaries). Returns 0, or -1 with *err set.
int recbench_quantize_rows(const at::Tensor* x, at::Tensor** q_out, at::Tensor** s_out,
                           char** err) {
  return guarded<int>(err, -1, [&]() -> int {
    auto xc = x->contiguous();
    TORCH_CHECK(xc.dim() == 2 && xc.scalar_type() == at::kFloat, "expected f32 [rows, k]");
    const int64_t rows = xc.size(0), k = xc.size(1);
    auto q = at::empty({rows, k}, xc.options().dtype(at::kChar));
    auto s = at::empty({rows, 1}, xc.options());
    quantize_rows_s8(xc.data_ptr<float>(), rows, k, q.data_ptr<int8_t>(), s.data_ptr<float>());
    *q_out = new at::Tensor(std::move(q));
    *s_out = new at::Tensor(std::move(s));
    return 0;
  });
}

// y[r, c] = acc[r, c] · xs[r] · ws[c] + b[c] for the int32 `acc` [rows, n] of an int8 product,
// the f32 row scales `xs` [rows, 1], column scales `ws` [1, n] and bias `b` [n], in one parallel
// pass (the ATen chain to(float) → mul → mul → add, in the same order, made four passes). Into
// `out` (a contiguous f32 [rows, n], e.g. a row block of a larger output) when not null, else a
// new tensor; returns a new handle to the result.
at::Tensor* recbench_int8_epilogue(const at::Tensor* acc, const at::Tensor* xs,
                                   const at::Tensor* ws, const at::Tensor* b,
                                   const at::Tensor* out, char** err) {
  return guarded<at::Tensor*>(err, nullptr, [&]() -> at::Tensor* {
    auto a = acc->contiguous();
    auto xsc = xs->contiguous();
    auto wsc = ws->contiguous();
    auto bc = b->contiguous();
    TORCH_CHECK(a.dim() == 2 && a.scalar_type() == at::kInt, "expected int32 [rows, n]");
    const int64_t rows = a.size(0), n = a.size(1);
    TORCH_CHECK(xsc.numel() == rows && wsc.numel() == n && bc.numel() == n, "scale sizes");
    auto y = out ? *out : at::empty({rows, n}, a.options().dtype(at::kFloat));
    TORCH_CHECK(y.is_contiguous() && y.scalar_type() == at::kFloat && y.size(0) == rows &&
                    y.size(1) == n,
                "out must be a contiguous f32 [rows, n]");
    const int32_t* ap = a.data_ptr<int32_t>();
    const float* xp = xsc.data_ptr<float>();
    const float* wp = wsc.data_ptr<float>();
    const float* bp = bc.data_ptr<float>();
    float* yp = y.data_ptr<float>();
    at::parallel_for(0, rows, 8, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) rescale_row(ap + r * n, xp[r], wp, bp, n, yp + r * n);
    });
    return new at::Tensor(std::move(y));
  });
}

// Whether FBGEMM runs here, and with 8-bit activations (VNNI) or 7-bit.
int recbench_rows_support() {
  if (!fbgemm::fbgemmSupportedCPU()) return 0;
  return fbgemm::fbgemmHasAvx512VnniSupport() ? 8 : 7;
}

// Prepacks the int8 weight `wq` [n, k] (symmetric, scale `ws` [n] per output channel) with the
// f32 bias `b` [n]. Returns a handle for recbench_rows_linear, or null with *err set.
void* recbench_rows_prepack(const at::Tensor* wq, const at::Tensor* ws, const at::Tensor* b,
                            char** err) {
  return guarded<void*>(err, nullptr, [&]() -> void* {
    TORCH_CHECK(fbgemm::fbgemmSupportedCPU(), "FBGEMM does not run on this CPU (it needs AVX2)");
    auto w = wq->contiguous();
    auto s = ws->contiguous().to(at::kFloat);
    auto bb = b->contiguous().to(at::kFloat);
    TORCH_CHECK(w.dim() == 2 && w.scalar_type() == at::kChar, "expected an int8 [out, in] weight");
    auto p = std::make_unique<RowsLinear>();
    p->n = w.size(0);
    p->k = w.size(1);
    TORCH_CHECK(s.numel() == p->n && bb.numel() == p->n, "scale and bias need one value per output");
    const int8_t* wp = w.data_ptr<int8_t>();
    // B = Wᵀ [k, n], handed over as W [n, k] (transposed, leading dimension k), as PyTorch's
    // quantized::linear_prepack does.
    p->packed = std::make_unique<fbgemm::PackBMatrix<int8_t>>(
        fbgemm::matrix_op_t::Transpose, p->k, p->n, wp, p->k, nullptr, 1);
    p->col_sums.resize(p->n);
    for (int64_t c = 0; c < p->n; ++c) {
      int32_t sum = 0;
      for (int64_t i = 0; i < p->k; ++i) sum += wp[c * p->k + i];
      p->col_sums[c] = sum;
    }
    p->zeros.assign(p->n, 0);
    p->scales.assign(s.data_ptr<float>(), s.data_ptr<float>() + p->n);
    p->bias.assign(bb.data_ptr<float>(), bb.data_ptr<float>() + p->n);
    p->eight_bit = fbgemm::fbgemmHasAvx512VnniSupport();
    return p.release();
  });
}

// y = x · Wᵀ + b for the f32 `x` [rows, k]: per block of rows, each row quantized symmetric to
// 8 (or 7) bits with its own scale and shifted to unsigned (zero point 128, or 64), FBGEMM's
// packed GEMM with its float requantization (weight scales per column, zero point removed through
// the column sums), then the row scale and the bias in the same cache-hot block.
at::Tensor* recbench_rows_linear(const at::Tensor* x, void* handle, char** err) {
  return guarded<at::Tensor*>(err, nullptr, [&]() -> at::Tensor* {
    const auto* p = static_cast<const RowsLinear*>(handle);
    auto xc = x->contiguous();
    TORCH_CHECK(xc.dim() == 2 && xc.scalar_type() == at::kFloat && xc.size(1) == p->k,
                "expected f32 [rows, in] matching the weight");
    const int64_t rows = xc.size(0), k = p->k, n = p->n;
    auto y = at::empty({rows, n}, xc.options());
    const float* xp = xc.data_ptr<float>();
    float* yp = y.data_ptr<float>();
    const float qmax = p->eight_bit ? 127.f : 63.f;
    const int32_t zero = p->eight_bit ? 128 : 64;
    const int64_t blocks = (rows + kRowsBlock - 1) / kRowsBlock;
    at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
      std::vector<uint8_t> qa(kRowsBlock * k);
      std::vector<float> sa(kRowsBlock);
      std::vector<int32_t> acc(kRowsBlock * n);
      for (int64_t blk = begin; blk < end; ++blk) {
        const int64_t r0 = blk * kRowsBlock, m = std::min(kRowsBlock, rows - r0);
        for (int64_t r = 0; r < m; ++r) {
          const float* xr = xp + (r0 + r) * k;
          const float sc = std::max(abs_max(xr, k), 1e-12f) / qmax;
          sa[r] = sc;
          quantize_u8(xr, sc, qmax, zero, k, qa.data() + r * k);
        }
        fbgemm::PackAWithRowOffset<uint8_t> packA(fbgemm::matrix_op_t::NoTranspose, m, k,
                                                  qa.data(), k, nullptr, 1, nullptr);
        fbgemm::DoNothing<float, float> done;
        // raw = acc − zero · col_sums[c]; out = raw · 1 · scales[c] (no row offsets: the weight
        // is symmetric).
        fbgemm::ReQuantizeForFloat<false, fbgemm::QuantizationGranularity::OUT_CHANNEL> requant(
            done, 1.f, p->scales.data(), zero, p->zeros.data(), nullptr, p->col_sums.data(),
            nullptr, static_cast<uint32_t>(n), 1);
        float* yb = yp + r0 * n;
        fbgemm::fbgemmPacked(packA, *p->packed, yb, acc.data(), static_cast<uint32_t>(n), requant,
                             0, 1);
        for (int64_t r = 0; r < m; ++r) scale_bias_row(yb + r * n, sa[r], p->bias.data(), n);
      }
    });
    return new at::Tensor(std::move(y));
  });
}

void recbench_rows_free(void* handle) { delete static_cast<RowsLinear*>(handle); }

// (4) The fp32 linear PyTorch's Inductor runs on x86 after freezing: the weight reordered once
// into oneDNN's blocked layout for `rows` rows (mkldnn::_reorder_linear_weight), then
// mkldnn::_linear_pointwise per call on the dense input, the bias added inside the product.
// aten's `linear` hands MKL's sgemm the plain weight, which repacks it on every call.
at::Tensor* recbench_onednn_pack(const at::Tensor* w, int64_t rows, char** err) {
  return guarded<at::Tensor*>(err, nullptr, [&]() -> at::Tensor* {
    static auto op =
        c10::Dispatcher::singleton().findSchemaOrThrow("mkldnn::_reorder_linear_weight", "");
    return new at::Tensor(call_boxed(op, {w->contiguous(), rows}).toTensor());
  });
}

// y = x · Wᵀ + b for the f32 `x` [rows, in] and a weight from recbench_onednn_pack.
at::Tensor* recbench_onednn_linear(const at::Tensor* x, const at::Tensor* packed,
                                   const at::Tensor* b, char** err) {
  return guarded<at::Tensor*>(err, nullptr, [&]() -> at::Tensor* {
    static auto op =
        c10::Dispatcher::singleton().findSchemaOrThrow("mkldnn::_linear_pointwise", "");
    return new at::Tensor(call_boxed(op, {x->contiguous(), *packed, *b, std::string("none"),
                                          c10::List<std::optional<at::Scalar>>(),
                                          std::string("")})
                              .toTensor());
  });
}

// (5) Prepacks the int8 weight `wq` [n, k] (symmetric, scale `ws` [n] per output channel) with
// the f32 bias `b` [n] for oneDNN, in the blocked layout it picks for products of `rows` rows.
// Returns a handle for recbench_onednn_int8_linear, or null with *err set.
void* recbench_onednn_int8_prepack(const at::Tensor* wq, const at::Tensor* ws, const at::Tensor* b,
                                   int64_t rows, char** err) {
  return guarded<void*>(err, nullptr, [&]() -> void* {
    static auto op =
        c10::Dispatcher::singleton().findSchemaOrThrow("onednn::qlinear_prepack", "");
    auto w = wq->contiguous();
    TORCH_CHECK(w.dim() == 2 && w.scalar_type() == at::kChar, "expected an int8 [out, in] weight");
    auto p = std::make_unique<OnednnInt8>();
    p->n = w.size(0);
    p->k = w.size(1);
    p->scales = ws->contiguous().to(at::kFloat);
    auto bb = b->contiguous().to(at::kFloat);
    TORCH_CHECK(p->scales.numel() == p->n && bb.numel() == p->n,
                "scale and bias need one value per output");
    p->zeros = at::zeros({p->n}, w.options().dtype(at::kLong));
    p->bias.assign(bb.data_ptr<float>(), bb.data_ptr<float>() + p->n);
    const int8_t* wp = w.data_ptr<int8_t>();
    const float* sp = p->scales.data_ptr<float>();
    p->col_scaled.resize(p->n);
    for (int64_t c = 0; c < p->n; ++c) {
      int32_t sum = 0;
      for (int64_t i = 0; i < p->k; ++i) sum += wp[c * p->k + i];
      p->col_scaled[c] = static_cast<float>(sum) * sp[c];
    }
    p->packed = call_boxed(op, {w, c10::IValue(std::vector<int64_t>{rows, p->k})}).toTensor();
    return p.release();
  });
}

}  // extern "C"

namespace {
// The rows quantized per row to u8 (quantize_row_u8): q [rows, k] u8 and sz [2, rows] f32 (the
// scales, then the zero points).
struct QRows {
  at::Tensor q, sz;
};

QRows quantize_rows_u8(const at::Tensor& x) {
  auto xc = x.contiguous();
  TORCH_CHECK(xc.dim() == 2 && xc.scalar_type() == at::kFloat, "expected f32 [rows, k]");
  const int64_t rows = xc.size(0), k = xc.size(1);
  QRows out{at::empty({rows, k}, xc.options().dtype(at::kByte)), at::empty({2, rows}, xc.options())};
  float* s = out.sz.data_ptr<float>();
  quantize_rows_u8(xc.data_ptr<float>(), rows, k, out.q.data_ptr<uint8_t>(), s, s + rows);
  return out;
}

// oneDNN's u8 × s8 matmul of the quantized rows `q` with the weight's column scales into f32
// (x scale 1, zero point 0: the rows' own are applied after, by `finish`).
at::Tensor onednn_int8_matmul(const at::Tensor& q, const OnednnInt8& p) {
  static auto op = c10::Dispatcher::singleton().findSchemaOrThrow("onednn::qlinear_pointwise", "");
  TORCH_CHECK(q.dim() == 2 && q.scalar_type() == at::kByte && q.size(1) == p.k,
              "expected u8 [rows, in] matching the weight");
  auto y = call_boxed(op, {q, 1.0, int64_t{0}, p.packed, p.scales, p.zeros, c10::IValue(), 1.0,
                           int64_t{0}, c10::IValue(at::kFloat), std::string("none"),
                           c10::List<std::optional<at::Scalar>>(), std::string("")})
               .toTensor()
               .contiguous();
  TORCH_CHECK(y.scalar_type() == at::kFloat && y.size(0) == q.size(0) && y.size(1) == p.n,
              "oneDNN's int8 linear returned an unexpected tensor");
  return y;
}

// What `finish` does to each row after the epilogue.
enum Finish : int { kPlain = 0, kAddNorm = 1, kGelu = 2 };

// In place on oneDNN's f32 output y [rows, n] of the rows quantized with `sz`, in one parallel
// pass over rows: the epilogue (the zero point's share removed, the row scale, the bias), then
// for kAddNorm the residual `res` added and LayerNorm with `w`, `b`, `eps`, or for kGelu GELU
// (gelu_row); and with `next` not null, the result's rows quantized to u8 into *next for the
// following linear layer, while each row is still in cache.
void finish_rows(at::Tensor& y, const at::Tensor& sz, const OnednnInt8& p, int mode,
                 const at::Tensor* res, const at::Tensor* w, const at::Tensor* b, double eps,
                 QRows* next) {
  const int64_t rows = y.size(0), n = p.n;
  TORCH_CHECK(y.is_contiguous() && y.scalar_type() == at::kFloat && y.size(1) == n,
              "expected oneDNN's f32 [rows, out]");
  TORCH_CHECK(sz.scalar_type() == at::kFloat && sz.numel() == 2 * rows,
              "expected 2 × rows f32 scales and zero points");
  at::Tensor r, wc, bc;
  if (mode == kAddNorm) {
    TORCH_CHECK(res && w && b, "the residual and LayerNorm's weight and bias are needed");
    r = res->contiguous();
    wc = w->contiguous();
    bc = b->contiguous();
    TORCH_CHECK(r.scalar_type() == at::kFloat && r.numel() == rows * n &&
                    wc.scalar_type() == at::kFloat && wc.numel() == n &&
                    bc.scalar_type() == at::kFloat && bc.numel() == n,
                "residual and LayerNorm parameters in f32 matching the output");
  }
  if (next) {
    next->q = at::empty({rows, n}, y.options().dtype(at::kByte));
    next->sz = at::empty({2, rows}, y.options());
  }
  float* yp = y.data_ptr<float>();
  const float* s = sz.data_ptr<float>();
  const float* z = s + rows;
  const bool norm = mode == kAddNorm;
  const float* rp = norm ? r.data_ptr<float>() : nullptr;
  const float* wp = norm ? wc.data_ptr<float>() : nullptr;
  const float* bp = norm ? bc.data_ptr<float>() : nullptr;
  uint8_t* nq = next ? next->q.data_ptr<uint8_t>() : nullptr;
  float* ns = next ? next->sz.data_ptr<float>() : nullptr;
  at::parallel_for(0, rows, 8, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      float* yr = yp + i * n;
      unshift_scale_bias_row(yr, z[i], p.col_scaled.data(), s[i], p.bias.data(), n);
      if (norm) {
        add_row(yr, rp + i * n, n);
        const float m = sum16(yr, n) / static_cast<float>(n);
        const float var = sq_dev16(yr, m, n) / static_cast<float>(n);
        const float rstd = 1.f / std::sqrt(var + static_cast<float>(eps));
        normalize_row(yr, m, rstd, wp, bp, n);
      }
      if (mode == kGelu) gelu_row(yr, n);
      if (next) quantize_row_u8(yr, n, nq + i * n, ns + i, ns + rows + i);
    }
  });
}

// The clock for the split, read only while it is on (0 otherwise): no clock reads on the hot
// path of an ordinary run.
int64_t split_now() { return g_split_on.load(std::memory_order_relaxed) ? now_ns() : 0; }

// Adds the time since `since` (from split_now) to part `i`; nothing when the split was off then.
void add_split(int i, int64_t since) {
  if (since != 0 && g_split_on.load(std::memory_order_relaxed))
    g_split_ns[i] += now_ns() - since;
}
}  // namespace

extern "C" {

// y = x · Wᵀ + b for the f32 `x` [rows, k]: each row quantized to u8 with its own scale and zero
// point (quantize_row_u8), oneDNN's matmul, then the epilogue (finish_rows, kPlain).
at::Tensor* recbench_onednn_int8_linear(const at::Tensor* x, void* handle, char** err) {
  return guarded<at::Tensor*>(err, nullptr, [&]() -> at::Tensor* {
    const auto* p = static_cast<const OnednnInt8*>(handle);
    TORCH_CHECK(x->dim() == 2 && x->size(1) == p->k, "expected [rows, in] matching the weight");
    int64_t t = split_now();
    QRows q = quantize_rows_u8(*x);
    add_split(0, t);
    t = split_now();
    auto y = onednn_int8_matmul(q.q, *p);
    add_split(1, t);
    t = split_now();
    finish_rows(y, q.sz, *p, kPlain, nullptr, nullptr, nullptr, 0, nullptr);
    add_split(2, t);
    return new at::Tensor(std::move(y));
  });
}

// The f32 `x` [rows, k] quantized per row to u8: *q_out [rows, k] and *sz_out [2, rows] (scales,
// then zero points), for recbench_onednn_int8_fused. Returns 0, or -1 with *err set.
int recbench_quantize_rows_u8(const at::Tensor* x, at::Tensor** q_out, at::Tensor** sz_out,
                              char** err) {
  return guarded<int>(err, -1, [&]() -> int {
    const int64_t t = split_now();
    QRows q = quantize_rows_u8(*x);
    add_split(0, t);
    *q_out = new at::Tensor(std::move(q.q));
    *sz_out = new at::Tensor(std::move(q.sz));
    return 0;
  });
}

// The linear layer on rows already quantized (`q`, `sz` from recbench_quantize_rows_u8 or from
// an earlier call's `next`), then finish_rows with `mode` (0 plain, 1 residual + LayerNorm,
// 2 GELU; `res`, `w`, `b` may be null unless mode is 1), quantizing the result's rows into
// *q_out, *sz_out when they are not null. Returns the f32 result, or null with *err set.
at::Tensor* recbench_onednn_int8_fused(const at::Tensor* q, const at::Tensor* sz, void* handle,
                                       int mode, const at::Tensor* res, const at::Tensor* w,
                                       const at::Tensor* b, double eps, at::Tensor** q_out,
                                       at::Tensor** sz_out, char** err) {
  return guarded<at::Tensor*>(err, nullptr, [&]() -> at::Tensor* {
    TORCH_CHECK(mode == kPlain || mode == kAddNorm || mode == kGelu, "unknown finishing mode");
    const auto* p = static_cast<const OnednnInt8*>(handle);
    int64_t t = split_now();
    auto y = onednn_int8_matmul(*q, *p);
    add_split(1, t);
    t = split_now();
    QRows next;
    const bool want = q_out && sz_out;
    finish_rows(y, sz->contiguous(), *p, mode, res, w, b, eps, want ? &next : nullptr);
    add_split(2, t);
    if (want) {
      *q_out = new at::Tensor(std::move(next.q));
      *sz_out = new at::Tensor(std::move(next.sz));
    }
    return new at::Tensor(std::move(y));
  });
}

// Turns the split of onednn_rows' time on or off and reads it: ms in quantizing the
// activations, in oneDNN's matmul and in the epilogue, summed since the last call, then reset.
void recbench_int8_split(bool on, double* ms) {
  g_split_on.store(on, std::memory_order_relaxed);
  for (int i = 0; i < 3; ++i) ms[i] = static_cast<double>(g_split_ns[i].exchange(0)) * 1e-6;
}

void recbench_onednn_int8_free(void* handle) { delete static_cast<OnednnInt8*>(handle); }

// How many threads at::parallel_for ran a 64-item loop on, the way the passes above use it: the
// check that they are compiled with OpenMP (build.rs), without which they run on one.
int64_t recbench_parallel_threads() {
  std::atomic<uint64_t> seen{0};
  at::parallel_for(0, 64, 1, [&](int64_t, int64_t) {
    seen.fetch_or(uint64_t{1} << std::min(at::get_thread_num(), 63));
  });
  return __builtin_popcountll(seen.load());
}

}  // extern "C"
