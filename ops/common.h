// common.h: helpers every op file shares — error messages that name the op and the argument,
// dtype and shape descriptions, stride views for broadcast inputs, C status handling.
// Only checks and bookkeeping live here: the math is in csrc/.
#pragma once

#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/core/ScalarType.h>

#include <array>
#include <cstdint>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>

#include "lrnn/common.h"

namespace lrnn {

using torch::stable::Tensor;
using torch::headeronly::ScalarType;

// Throws a RuntimeError (in Python) reading "lrnn::<op>: <message>".
template <typename... Args>
[[noreturn]] void fail(const char* op, const Args&... args) {
  std::ostringstream msg;
  msg << "lrnn::" << op << ": ";
  (msg << ... << args);
  throw std::runtime_error(msg.str());
}

#define LRNN_CHECK(cond, op, ...) \
  do {                            \
    if (!(cond)) ::lrnn::fail(op, __VA_ARGS__); \
  } while (0)

const char* dtype_name(ScalarType t);
std::string shape_str(const Tensor& t);

// The lrnn_dtype of a torch dtype, or nullopt when the C kernels do not take it.
std::optional<lrnn_dtype> to_lrnn_dtype(ScalarType t);
bool is_complex(ScalarType t);
// float32 for complex64, float64 for complex128, the type itself otherwise.
ScalarType real_type(ScalarType t);

// Strides of `t` viewed as broadcast to `shape` (right-aligned, like torch broadcasting):
// a missing or size-1 dimension gets stride 0. The caller checked broadcastability.
template <size_t N>
std::array<int64_t, N> broadcast_strides(const Tensor& t, const std::array<int64_t, N>& shape) {
  std::array<int64_t, N> strides{};
  const int64_t offset = static_cast<int64_t>(N) - t.dim();
  for (int64_t i = 0; i < static_cast<int64_t>(N); ++i) {
    const int64_t k = i - offset;
    strides[i] = (k < 0 || (t.size(k) == 1 && shape[i] != 1)) ? 0 : t.stride(k);
  }
  return strides;
}

// Copies the first N strides of `t` into a params struct's stride array.
template <int N>
void copy_strides(int64_t* dst, const Tensor& t) {
  for (int i = 0; i < N; ++i) dst[i] = t.stride(i);
}

// Raises if a C kernel returned an error.
void check_status(lrnn_status status, const char* op);

std::string device_str(const Tensor& t);  // "cpu", "cuda:0"
// Checks that `t` (argument `name`) is on the device of `ref` (argument `ref_name`).
void check_same_device(const Tensor& t, const Tensor& ref, const char* op, const char* name,
                       const char* ref_name);

#ifdef USE_CUDA
// The current CUDA stream (a cudaStream_t) of the device `t` lives on, for the CUDA launchers.
void* current_cuda_stream(const Tensor& t, const char* op);
#endif

}  // namespace lrnn
