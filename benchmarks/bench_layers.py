"""Forward+backward time and peak memory of the time-invariant layers (S5, LRU, Centaurus) at one
(B, L, H), float32 and bf16 autocast, side by side with

  torch-ref   the same layer with its operators replaced by their pure-PyTorch twins from
              lrnn.reference: linear_scan_ref (a loop over time) and, where the reference module
              has it, ssm_kernel_ref (materializes the (H, N, L) powers). The FFT convolution is
              torch.fft in both columns.
  lrnnx       the same model from SforAiDl/lrnnx, when it is importable

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
from lrnn.nn import LRU, S5, Centaurus  # noqa: E402
from lrnn.reference import linear_scan_ref  # noqa: E402


REF_TWINS = {"linear_scan": linear_scan_ref}
if hasattr(lrnn.reference, "ssm_kernel_ref"):
    REF_TWINS["ssm_kernel"] = lrnn.reference.ssm_kernel_ref
# Until the ssm_kernel operator is merged, lrnn.nn._lti holds a pure-PyTorch stand-in that also
# materializes (H, N, L): then the lrnn column is subject to the --max-gb limit too.
STAND_IN = lti.ssm_kernel.__module__ == lti.__name__


@contextlib.contextmanager
def reference_ops():
    """Route the layers' operators through their pure-PyTorch twins."""
    saved = {name: getattr(lti, name) for name in REF_TWINS}
    for name, ref in REF_TWINS.items():
        setattr(lti, name, ref)
    try:
        yield
    finally:
        for name, op in saved.items():
            setattr(lti, name, op)


def lrnnx_layer(name: str, H: int):
    """The matching lrnnx layer, or None when lrnnx is not importable."""
    try:
        from lrnnx.models import lti as X
    except ImportError:
        return None
    makers = {
        "S5 scan": lambda: X.S5(H, 256, "zoh", conj_sym=True),
        "LRU scan": lambda: X.LRU(H, 256),
        "Centaurus s5": lambda: X.CentaurusPWNeck(H, 4, 16),
        "Centaurus neck": lambda: X.CentaurusNeck(H, 4, 16),
        "Centaurus dws": lambda: X.CentaurusDWS(H, H, 16),
    }
    return makers[name]() if name in makers else None


def cases(H: int):
    """(name, factory, uses_scan, bytes per time step of a pure-PyTorch ssm_kernel (H, N, L) tensor)."""
    return [
        ("S5 scan", lambda: S5(H, 256, 8, mode="scan"), True, 0),
        ("S5 conv", lambda: S5(H, 256, 8, mode="conv"), False, 0),
        ("LRU scan", lambda: LRU(H, 256, mode="scan"), True, 0),
        ("LRU conv", lambda: LRU(H, 256, mode="conv"), False, 0),
        ("Centaurus s5", lambda: Centaurus(H, 16, 4, mode="s5", norm=None), False, 64 * 8),
        ("Centaurus neck", lambda: Centaurus(H, 16, 4, mode="neck", norm=None), False, 64 * 8),
        ("Centaurus dws", lambda: Centaurus(H, 16, 4, mode="dws", norm=None), False, H * 16 * 8),
        ("Centaurus full", lambda: Centaurus(H, 16, 4, mode="full", norm=None), False, H * H * 16 * 8),
    ]


def measure(layer, x, autocast: bool, reps: int, device: str) -> tuple[float, float | None]:
    params = list(layer.parameters())
    cuda = device == "cuda"

    def run():
        with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
            y = layer(x)
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
    print("| layer | precision | impl | ms | peak MiB | vs lrnn |")
    print("|---|---|---|---:|---:|---:|")
    rows = []
    for name, factory, uses_scan, stand_in_bytes in cases(H):
        if args.only and not any(s in name for s in args.only.split(",")):
            continue
        layer = factory().to(device)
        for autocast in (False, True):
            prec = "bf16-autocast" if autocast else "fp32"
            impls = [("lrnn", layer, contextlib.nullcontext, args.reps)]
            if uses_scan or "ssm_kernel" in REF_TWINS:
                impls.append(("torch-ref", layer, reference_ops, args.ref_reps))
            other = lrnnx_layer(name, H)
            if other is not None:
                impls.append(("lrnnx", other.to(device), contextlib.nullcontext, args.reps))
            base_ms = None
            for impl, mod, ctx, reps in impls:
                if (impl == "torch-ref" or STAND_IN) and stand_in_bytes * L > args.max_gb * 2**30:
                    ms, peak, note = None, None, f"skipped (PyTorch kernel needs {stand_in_bytes * L / 2**30:.0f} GB)"
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
