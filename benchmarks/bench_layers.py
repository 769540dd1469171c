"""Forward+backward time and peak memory of the time-invariant layers (S4, S4D, S5, LRU, Centaurus)
at one (B, L, H), float32 and bf16 autocast, side by side with

  torch-ref   the same layer with its operators replaced by their pure-PyTorch twins from
              lrnn.reference: linear_scan_ref (a loop over time), ssm_kernel_ref and cauchy_ref
              (materialize (H, N, L)). The FFT convolution is torch.fft in both columns.
  lrnnx       the layer of the same configuration from SforAiDl/lrnnx 1.0 (PyPI), when importable.
              Its LTI layers are pure PyTorch (FFT convolutions; S4/S4D's Cauchy and Vandermonde
              kernels fall back to PyTorch without pykeops), but its package imports two compiled
              extensions of its selective scans at import time (selective_scan_cuda,
              simplified_scan_cuda). When those are not built (a wheel of its Python sources
              only), empty stand-in modules let the import succeed; the LTI layers never call them
              (a call would fail loudly, reported in the row). Config differences, by necessity:
              lrnnx's S5 has no conjugate symmetry (NotImplementedError), so it keeps 256 complex
              states where ours keeps 128 conjugate pairs of the same P = 256 model; lrnnx's S4/S4D
              are built with transposed=False for (B, L, H) input.

Usage:
  python benchmarks/bench_layers.py                       # CUDA: (16, 4096, 512); CPU: (4, 512, 64)
  python benchmarks/bench_layers.py --B 16 --L 4096 --H 512 --json out.json

Time is the median of --reps forward+backward passes after warm-up (CUDA: synchronized wall
clock); peak memory is torch.cuda.max_memory_allocated above the inputs (CUDA only). A case that
runs out of memory is reported as OOM, one that fails (e.g. an operator without a kernel for
the device) as error; one whose pure-PyTorch kernel (reference or stand-in) would need more than
--max-gb is reported as skipped.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
import lrnn  # noqa: E402
import lrnn.nn._lti as lti  # noqa: E402
import lrnn.nn.s4 as s4mod  # noqa: E402
from lrnn.nn import LRU, S4, S4D, S5, Centaurus  # noqa: E402
from lrnn.reference import cauchy_ref, linear_scan_ref, ssm_kernel_ref  # noqa: E402


REF_TWINS = {"linear_scan": linear_scan_ref, "ssm_kernel": ssm_kernel_ref, "cauchy": cauchy_ref}


@contextlib.contextmanager
def reference_ops():
    """Route the layers' operators through their pure-PyTorch twins (lrnn.nn._lti for S5, LRU,
    Centaurus; lrnn.nn.s4 imports its own names)."""
    saved = [(mod, name, getattr(mod, name)) for mod in (lti, s4mod) for name in REF_TWINS if hasattr(mod, name)]
    for mod, name, _ in saved:
        setattr(mod, name, REF_TWINS[name])
    try:
        yield
    finally:
        for mod, name, op in saved:
            setattr(mod, name, op)


def import_lrnnx():
    """(lrnnx.models.lti, None) or (None, why not). Stand-ins for its two compiled selective-scan
    extensions are registered only when they are missing (see the module docstring)."""
    import importlib.util
    import types
    if importlib.util.find_spec("lrnnx") is None:
        return None, "lrnnx is not installed (a pure-Python wheel can travel in .whl/, see tests/gpu/layers.sh)"
    stubbed = []
    for ext in ("selective_scan_cuda", "simplified_scan_cuda"):
        if importlib.util.find_spec(ext) is None:
            sys.modules[ext] = types.ModuleType(ext)
            stubbed.append(ext)
    try:
        from lrnnx.models import lti as X
    except Exception as e:  # any import-time failure of a third-party package is a reason to skip
        return None, f"import lrnnx failed: {type(e).__name__}: {str(e).splitlines()[0][:100]}"
    if stubbed:
        print(f"# lrnnx imported with empty stand-ins for its unbuilt extensions: {', '.join(stubbed)}")
    return X, None


LRNNX, LRNNX_WHY = import_lrnnx()


def lrnnx_layer(name: str, H: int, L: int):
    """The matching lrnnx layer, or None when lrnnx is not importable or has no such layer."""
    if LRNNX is None:
        return None
    X = LRNNX
    makers = {
        "S4": lambda: X.S4(H, d_state=64, l_max=L, transposed=False, verbose=False),
        "S4D": lambda: X.S4D(H, d_state=64, l_max=L, transposed=False, verbose=False),
        "S5 scan": lambda: X.S5(H, 256, "zoh", conj_sym=False),
        "S5 conv": lambda: X.S5(H, 256, "zoh", conj_sym=False),
        "LRU scan": lambda: X.LRU(H, 256),
        "LRU conv": lambda: X.LRU(H, 256),
        "Centaurus s5": lambda: X.CentaurusPWNeck(H, 4, 16),
        "Centaurus neck": lambda: X.CentaurusNeck(H, 4, 16),
        "Centaurus dws": lambda: X.CentaurusDWS(H, H, 16),
        "Centaurus full": lambda: X.CentaurusFull(H, H * H, 16),
    }
    return makers[name]() if name in makers else None


def cases(H: int, L: int):
    """(name, factory, bytes per time step of the largest (H, N, L) tensor of the pure-PyTorch path)."""
    return [
        ("S4", lambda: S4(H, 64, l_max=L), H * 32 * 8),
        ("S4D", lambda: S4D(H, 64), H * 32 * 8),
        ("S5 scan", lambda: S5(H, 256, 8, mode="scan"), 0),
        ("S5 conv", lambda: S5(H, 256, 8, mode="conv"), 0),
        ("LRU scan", lambda: LRU(H, 256, mode="scan"), 0),
        ("LRU conv", lambda: LRU(H, 256, mode="conv"), 0),
        ("Centaurus s5", lambda: Centaurus(H, 16, 4, mode="s5", norm=None), 64 * 8),
        ("Centaurus neck", lambda: Centaurus(H, 16, 4, mode="neck", norm=None), 64 * 8),
        ("Centaurus dws", lambda: Centaurus(H, 16, 4, mode="dws", norm=None), H * 16 * 8),
        ("Centaurus full", lambda: Centaurus(H, 16, 4, mode="full", norm=None), H * H * 16 * 8),
    ]


def measure(layer, x, autocast: bool, reps: int, device: str) -> tuple[float, float | None]:
    params = list(layer.parameters())
    cuda = device == "cuda"

    def run():
        with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
            y = layer(x)
        y = y[0] if isinstance(y, tuple) else y   # lrnnx's S4/S4D return (y, state)
        grads = torch.autograd.grad(y.float().square().mean(), [x, *params])
        return grads

    run()  # warm-up (allocator, FFT plans)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    times = []
    for _ in range(reps):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        run()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20 if cuda else None
    return statistics.median(times) * 1e3, peak


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--B", type=int)
    ap.add_argument("--L", type=int)
    ap.add_argument("--H", type=int)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--ref-reps", type=int, default=1, help="repetitions of the (slow) torch-ref path")
    ap.add_argument("--max-gb", type=float, default=8.0)
    ap.add_argument("--only", default="", help="comma-separated substrings of case names to run")
    ap.add_argument("--threads", type=int, help="torch CPU threads (1 avoids OpenMP spin-waits on a shared machine)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    full = args.device == "cuda"
    B = args.B or (16 if full else 4)
    L = args.L or (4096 if full else 512)
    H = args.H or (512 if full else 64)
    device = args.device
    torch.manual_seed(0)
    x = torch.randn(B, L, H, device=device, requires_grad=True)
    info = lrnn.build_info()
    print(f"# lrnn layers, forward+backward, (B, L, H) = ({B}, {L}, {H}), device {device}"
          + (f" ({torch.cuda.get_device_name()})" if device == "cuda" else "")
          + f", {torch.get_num_threads()} CPU threads, torch {torch.__version__}, lrnn {info.get('git_revision', '?')}")
    if LRNNX is None:
        print(f"# lrnnx column skipped: {LRNNX_WHY}")
    print("| layer | precision | impl | ms | peak MiB | vs lrnn |")
    print("|---|---|---|---:|---:|---:|")
    rows = []
    for name, factory, ref_bytes in cases(H, L):
        if args.only and not any(s in name for s in args.only.split(",")):
            continue
        layer = factory().to(device)
        for autocast in (False, True):
            prec = "bf16-autocast" if autocast else "fp32"
            impls = [("lrnn", layer, contextlib.nullcontext, args.reps)]
            impls.append(("torch-ref", layer, reference_ops, args.ref_reps))
            other = lrnnx_layer(name, H, L)
            if other is not None:
                impls.append(("lrnnx", other.to(device), contextlib.nullcontext, args.reps))
            base_ms = None
            for impl, mod, ctx, reps in impls:
                if impl == "torch-ref" and ref_bytes * L > args.max_gb * 2**30:
                    ms, peak, note = None, None, f"skipped (PyTorch kernel needs {ref_bytes * L / 2**30:.0f} GB)"
                else:
                    try:
                        with ctx():
                            ms, peak = measure(mod, x, autocast, reps, device)
                        note = ""
                    except torch.OutOfMemoryError:
                        ms, peak, note = None, None, "OOM"
                        torch.cuda.empty_cache()
                    except RuntimeError as e:  # a provider that fails is reported in its row, not fatal
                        ms, peak, note = None, None, "error: " + str(e).splitlines()[0][:60]
                base_ms = ms if impl == "lrnn" else base_ms
                ratio = f"{ms / base_ms:.1f}x" if ms and base_ms else ""
                print(f"| {name} | {prec} | {impl} | {f'{ms:.2f}' if ms else note} | "
                      f"{f'{peak:.0f}' if peak is not None else '-'} | {ratio} |", flush=True)
                rows.append({"layer": name, "precision": prec, "impl": impl, "ms": ms, "peak_mib": peak,
                             "note": note, "B": B, "L": L, "H": H, "device": device})
        del layer
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
