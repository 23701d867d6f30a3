// PyTorch's own dynamic int8 linear, for the torch backend: quantized::linear_prepack once per
// layer (FBGEMM packs the int8 weight and its column offsets) and quantized::linear_dynamic per
// call (activations quantized per tensor on the fly, int8 GEMM, result in f32 with the bias).
// This is what torch.ao.quantization.quantize_dynamic runs for nn.Linear on x86. tch has no
// binding for these operators, so they are called through the dispatcher, boxed.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>

#include <cstdlib>
#include <cstring>
#include <exception>

namespace {
char* copy_message(const char* what) {
  return strdup(what ? what : "unknown C++ exception");
}
}  // namespace

extern "C" {

// Packs `qweight` (a qint8 tensor, per tensor or per output channel) with the f32 `bias` (may be
// null). Returns an opaque handle for recbench_linear_dynamic, or null with *err set (free()).
void* recbench_linear_prepack(const at::Tensor* qweight, const at::Tensor* bias, char** err) {
  try {
    static auto op =
        c10::Dispatcher::singleton().findSchemaOrThrow("quantized::linear_prepack", "");
    torch::jit::Stack stack;
    stack.emplace_back(*qweight);
    if (bias) {
      stack.emplace_back(*bias);
    } else {
      stack.emplace_back(c10::IValue());
    }
    op.callBoxed(&stack);
    return new c10::IValue(std::move(stack.at(0)));
  } catch (const std::exception& e) {
    *err = copy_message(e.what());
  } catch (...) {
    *err = copy_message(nullptr);
  }
  return nullptr;
}

// y = x · Wᵀ + b for the f32 `input` [rows, in] and a packed weight; `reduce_range` quantizes
// activations to 7 bits, as PyTorch does on x86 (no overflow in the VPMADDUBSW path).
at::Tensor* recbench_linear_dynamic(const at::Tensor* input, void* packed, bool reduce_range,
                                    char** err) {
  try {
    static auto op =
        c10::Dispatcher::singleton().findSchemaOrThrow("quantized::linear_dynamic", "");
    torch::jit::Stack stack;
    stack.emplace_back(*input);
    stack.emplace_back(*static_cast<c10::IValue*>(packed));
    stack.emplace_back(reduce_range);
    op.callBoxed(&stack);
    return new at::Tensor(stack.at(0).toTensor());
  } catch (const std::exception& e) {
    *err = copy_message(e.what());
  } catch (...) {
    *err = copy_message(nullptr);
  }
  return nullptr;
}

void recbench_linear_free(void* packed) { delete static_cast<c10::IValue*>(packed); }

}  // extern "C"
