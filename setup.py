"""Builds lrnn-lib with CMake and installs the Python package `lrnn` (python/lrnn).

    pip install --no-build-isolation -e .      # editable, for development (what `make` uses)
    pip install --no-build-isolation .         # a regular install

The CMake build tree is ./build (override with LRNN_BUILD_DIR) so that ctest and the C++
example can run from it. LRNN_CUDA=AUTO|ON|OFF and LRNN_CUDA_ARCHS (default "90") select the
CUDA kernels; MAX_JOBS caps parallel compile jobs.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


class CMakeBuild(build_ext):
    def run(self):
        build_dir = Path(os.environ.get("LRNN_BUILD_DIR", ROOT / "build")).resolve()
        config = [
            "cmake", "-S", str(ROOT), "-B", str(build_dir),
            f"-DPython3_EXECUTABLE={sys.executable}",
            f"-DLRNN_CUDA={os.environ.get('LRNN_CUDA', 'AUTO')}",
            f"-DLRNN_CUDA_ARCHS={os.environ.get('LRNN_CUDA_ARCHS', '90')}",
        ]
        if shutil.which("ninja") and not (build_dir / "CMakeCache.txt").exists():
            config += ["-G", "Ninja"]
        subprocess.check_call(config)
        jobs = os.environ.get("MAX_JOBS", str(os.cpu_count() or 2))
        subprocess.check_call(["cmake", "--build", str(build_dir), "-j", jobs])
        editable = self.inplace or getattr(self, "editable_mode", False)
        dest = ROOT / "python" / "lrnn" if editable else Path(self.build_lib) / "lrnn"
        dest.mkdir(parents=True, exist_ok=True)
        for name in ("liblrnn_ops.so", "build_info.json"):
            shutil.copy2(build_dir / name, dest / name)


setup(
    name="lrnn",
    version="0.1.0",
    description="Linear RNNs and state-space models for PyTorch on fast C and CUDA kernels",
    package_dir={"": "python"},
    packages=find_packages("python"),
    ext_modules=[Extension("lrnn._cmake_build", sources=[])],
    cmdclass={"build_ext": CMakeBuild},
    python_requires=">=3.10",
    install_requires=["torch>=2.11"],
    zip_safe=False,
)
