"""Finds and loads liblrnn_ops.so, the C++ library that registers every torch.ops.lrnn operator.

The library is built by CMake (through setup.py) against the LibTorch stable ABI targeting torch
2.11, so one build serves torch 2.11 and newer; build_info.json beside it records the build.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

_HERE = Path(__file__).resolve().parent
_LIB_NAME = "liblrnn_ops.so"
_MIN_TORCH = (2, 11)
_loaded_path: Path | None = None


def _torch_version() -> tuple[int, int]:
    major, minor = torch.__version__.split("+")[0].split(".")[:2]
    return int(major), int(minor)


def library_path() -> Path:
    """Path of liblrnn_ops.so: $LRNN_LIBRARY if set, else the copy installed in this package."""
    return Path(os.environ.get("LRNN_LIBRARY", _HERE / _LIB_NAME))


def build_info() -> dict:
    """What the loaded library was built with: torch version, devices, CUDA archs, git revision."""
    info_file = library_path().with_name("build_info.json")
    info = json.loads(info_file.read_text()) if info_file.exists() else {}
    info["library"] = str(_loaded_path or library_path())
    info["runtime_torch_version"] = torch.__version__
    return info


def load() -> None:
    """Loads the op library once; raises ImportError with the remedy when it cannot."""
    global _loaded_path
    if _loaded_path is not None:
        return
    path = library_path()
    if not path.exists():
        raise ImportError(
            f"lrnn: the op library {path} is missing. Build it with "
            "`pip install --no-build-isolation -e .` in the lrnn-lib checkout (or `make build`).")
    if _torch_version() < _MIN_TORCH:
        raise ImportError(
            f"lrnn: torch {torch.__version__} is too old; the library targets the stable ABI of torch "
            f"{_MIN_TORCH[0]}.{_MIN_TORCH[1]} and newer.")
    try:
        torch.ops.load_library(str(path))
    except OSError as err:
        info_file = path.with_name("build_info.json")
        built = info_file.read_text().strip() if info_file.exists() else "unknown build"
        raise ImportError(
            f"lrnn: cannot load {path} ({err}). It was built as {built}; this is torch "
            f"{torch.__version__}. Rebuild with `pip install --no-build-isolation -e .`.") from err
    _loaded_path = path
