"""The op library as a user meets it: the loader's messages, build metadata, and the library's
linkage (no Python in liblrnn_ops.so, the C entry point a C++ program calls)."""
from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys

import pytest
import torch

import lrnn
from lrnn._library import library_path

from conftest import REPO, has_cuda_kernel


def test_missing_library_gives_clear_import_error(tmp_path):
    env = dict(os.environ, LRNN_LIBRARY=str(tmp_path / "nowhere.so"), PYTHONPATH=str(REPO / "python"))
    proc = subprocess.run([sys.executable, "-c", "import lrnn"], capture_output=True, text=True, env=env)
    assert proc.returncode != 0
    assert "the op library" in proc.stderr and "is missing" in proc.stderr
    assert "pip install --no-build-isolation -e ." in proc.stderr


def test_broken_library_names_build_and_remedy(tmp_path):
    fake = tmp_path / "liblrnn_ops.so"
    fake.write_bytes(b"not an ELF file")
    (tmp_path / "build_info.json").write_text(json.dumps({"torch_version": "9.9.9"}))
    env = dict(os.environ, LRNN_LIBRARY=str(fake), PYTHONPATH=str(REPO / "python"))
    proc = subprocess.run([sys.executable, "-c", "import lrnn"], capture_output=True, text=True, env=env)
    assert proc.returncode != 0
    assert "cannot load" in proc.stderr and "9.9.9" in proc.stderr and "Rebuild" in proc.stderr


def test_library_has_no_python_and_exports_init():
    path = library_path()
    deps = subprocess.run(["ldd", str(path)], capture_output=True, text=True).stdout
    assert "libpython" not in deps and "torch_python" not in deps
    lib = ctypes.CDLL(str(path))
    lib.lrnn_ops_init()
    lib.lrnn_build_info.restype = ctypes.c_char_p
    info = json.loads(lib.lrnn_build_info().decode())
    assert info["torch_version"] == lrnn.build_info()["torch_version"]


@pytest.mark.cuda
@pytest.mark.skipif(not has_cuda_kernel("lrnn::linear_scan"), reason="needs a GPU and the CUDA kernels")
def test_tensors_on_different_devices_are_rejected():
    with pytest.raises(RuntimeError, match=r"lrnn::linear_scan: argument 'a' is on cpu but 'b' is on cuda:0"):
        torch.ops.lrnn.linear_scan(torch.rand(3), torch.randn(2, 5, 3, device="cuda"))
    with pytest.raises(RuntimeError, match=r"argument 'h0' is on cpu but 'b' is on cuda:0"):
        torch.ops.lrnn.linear_scan(torch.rand(3, device="cuda"), torch.randn(2, 5, 3, device="cuda"), torch.randn(2, 3))
