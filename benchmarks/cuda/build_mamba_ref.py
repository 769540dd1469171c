"""Builds mamba_ssm's selective-scan CUDA extension (`selective_scan_cuda`) from its PyPI source
distribution, for the side-by-side benchmark only (benchmarks/bench_selective_scan.py). It compiles
just that extension, for the local GPU's architecture, so the build takes minutes instead of the
full package's hour; nothing of mamba_ssm enters lrnn.

    python benchmarks/cuda/build_mamba_ref.py .whl/mamba_ssm-2.3.2.post1.tar.gz BUILD_DIR
    PYTHONPATH=BUILD_DIR python benchmarks/bench_selective_scan.py
"""
import glob
import os
import sys
import tarfile
import time

import torch
from torch.utils.cpp_extension import load


def main():
    sdist, out = sys.argv[1], os.path.abspath(sys.argv[2])
    os.makedirs(out, exist_ok=True)
    with tarfile.open(sdist) as tar:
        tar.extractall(out, filter="data")
    src = glob.glob(os.path.join(out, "mamba_ssm-*", "csrc", "selective_scan"))[0]
    major, minor = torch.cuda.get_device_capability()
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", f"{major}.{minor}")
    flags = ["-O3", "-std=c++17", "--expt-relaxed-constexpr", "--expt-extended-lambda", "--use_fast_math"]
    # the kernels use half/bfloat16 operators that torch's default flags switch off
    flags += [f"-U__CUDA_NO_{t}_{k}__" for t in ("HALF", "BFLOAT16", "BFLOAT162") for k in ("OPERATORS", "CONVERSIONS")]
    sources = [os.path.join(src, "selective_scan.cpp")] + sorted(glob.glob(os.path.join(src, "*.cu")))
    t0 = time.time()
    load("selective_scan_cuda", sources, extra_cflags=["-O3", "-std=c++17"], extra_cuda_cflags=flags,
         build_directory=out, verbose=False)
    print(f"built {os.path.join(out, 'selective_scan_cuda.so')} in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
