// lti_kernels.h: argument checks and output allocation for the kernel-generation ops of the
// time-invariant models — lrnn::ssm_kernel{,_backward} (Vandermonde) and lrnn::cauchy{,_backward}
// — shared by the CPU and CUDA implementations, which differ only in how they run the C kernels
// on the params built here.
#pragma once

#include <string>

#include "common.h"
#include "lrnn/cauchy.h"
#include "lrnn/ssm_kernel.h"

namespace lrnn {

struct SsmKernelForward {
  Tensor k;                         // (H, L) real
  lrnn_ssm_kernel_params params;
};

struct SsmKernelBackward {
  Tensor grad_w, grad_z;            // (H, N), full size even when w or z was broadcast
  lrnn_ssm_kernel_bwd_params params;
};

struct CauchyForward {
  Tensor out;                       // (H, L) complex
  lrnn_cauchy_params params;
};

struct CauchyBackward {
  Tensor grad_v, grad_lam;          // (H, N)
  lrnn_cauchy_bwd_params params;
};

SsmKernelForward ssm_kernel_prepare(const Tensor& w, const Tensor& z, int64_t L, const std::string& basis);
SsmKernelBackward ssm_kernel_backward_prepare(const Tensor& grad_k, const Tensor& w, const Tensor& z,
                                              const std::string& basis);
CauchyForward cauchy_prepare(const Tensor& v, const Tensor& omega, const Tensor& lam, bool symmetric);
CauchyBackward cauchy_backward_prepare(const Tensor& grad_out, const Tensor& v, const Tensor& omega,
                                       const Tensor& lam, bool symmetric);

}  // namespace lrnn
