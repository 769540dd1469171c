// common.cpp: implementation of the shared op helpers (common.h).
#include "common.h"

#ifdef USE_CUDA
#include <torch/csrc/inductor/aoti_torch/c/shim.h>
#endif

namespace lrnn {

const char* dtype_name(ScalarType t) {
  switch (t) {
    case ScalarType::Float: return "float32";
    case ScalarType::Double: return "float64";
    case ScalarType::BFloat16: return "bfloat16";
    case ScalarType::Half: return "float16";
    case ScalarType::ComplexFloat: return "complex64";
    case ScalarType::ComplexDouble: return "complex128";
    case ScalarType::Long: return "int64";
    case ScalarType::Int: return "int32";
    case ScalarType::Bool: return "bool";
    default: return "an unsupported dtype";
  }
}

std::string shape_str(const Tensor& t) {
  std::ostringstream s;
  s << "(";
  for (int64_t i = 0; i < t.dim(); ++i) s << (i ? ", " : "") << t.size(i);
  if (t.dim() == 1) s << ",";
  s << ")";
  return s.str();
}

std::optional<lrnn_dtype> to_lrnn_dtype(ScalarType t) {
  switch (t) {
    case ScalarType::Float: return LRNN_F32;
    case ScalarType::Double: return LRNN_F64;
    case ScalarType::BFloat16: return LRNN_BF16;
    case ScalarType::Half: return LRNN_F16;
    case ScalarType::ComplexFloat: return LRNN_C64;
    case ScalarType::ComplexDouble: return LRNN_C128;
    default: return std::nullopt;
  }
}

bool is_complex(ScalarType t) {
  return t == ScalarType::ComplexFloat || t == ScalarType::ComplexDouble;
}

ScalarType real_type(ScalarType t) {
  if (t == ScalarType::ComplexFloat) return ScalarType::Float;
  if (t == ScalarType::ComplexDouble) return ScalarType::Double;
  return t;
}

void check_status(lrnn_status status, const char* op) {
  LRNN_CHECK(status == LRNN_OK, op, "kernel failed: ", lrnn_status_string(status));
}

std::string device_str(const Tensor& t) {
  if (t.is_cpu()) return "cpu";
  std::ostringstream s;
  s << (t.is_cuda() ? "cuda:" : "device:") << static_cast<int>(t.get_device_index());
  return s.str();
}

void check_same_device(const Tensor& t, const Tensor& ref, const char* op, const char* name,
                       const char* ref_name) {
  LRNN_CHECK(t.is_cpu() == ref.is_cpu() && t.is_cuda() == ref.is_cuda() &&
                 t.get_device_index() == ref.get_device_index(),
             op, "argument '", name, "' is on ", device_str(t), " but '", ref_name, "' is on ",
             device_str(ref), "; all tensors must be on one device");
}

#ifdef USE_CUDA
void* current_cuda_stream(const Tensor& t, const char* op) {
  void* stream = nullptr;
  LRNN_CHECK(aoti_torch_get_current_cuda_stream(t.get_device_index(), &stream) == AOTI_TORCH_SUCCESS, op,
             "cannot get the current CUDA stream of ", device_str(t));
  return stream;
}
#endif

}  // namespace lrnn
