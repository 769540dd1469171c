"""Benchmark of lrnn::selective_scan (S6 / Mamba-1 scan), forward and backward, side by side with
mamba_ssm's CUDA kernel (selective_scan_fn) and its pure-PyTorch selective_scan_ref when mamba_ssm
is importable, and with lrnn.reference's loop on the CPU.

Setting (as the mamba_ssm numbers in issue 4): u, delta, B, C random, variable B/C (G = 1),
delta_softplus with delta_bias, D skip, no z. Each row reports the median time and the fraction of
the H200 compute floor reached (kernels.md §1.2: per (b, d, l, n) one MUFU exp2 at 4.18e12/s and
~8 FP32 ops forward / ~25 backward at 3.35e13/s; the floor is the larger of the two). "bwd" is
the autograd backward alone (forward excluded). On the CPU the floor columns are meaningless.

    python benchmarks/bench_selective_scan.py --device cuda [--json out.json]
    python benchmarks/bench_selective_scan.py --device cpu
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

import lrnn
from lrnn.reference import selective_scan_ref as lrnn_loop_ref

MUFU_PER_S = 4.18e12  # H200: 16 ex2/clk/SM x 132 SMs x 1.98 GHz
FP32_PER_S = 3.35e13  # H200: 128 FP32 lanes/SM x 132 SMs x 1.98 GHz

CUDA_SHAPES = [(8, 1536, 2048, 16), (2, 1536, 16384, 16), (8, 1536, 2048, 64), (2, 1536, 16384, 64)]
CPU_SHAPES = [(1, 64, 1024, 16), (2, 256, 2048, 16), (1, 64, 1024, 64)]


def inputs(shape, dtype, device, requires_grad):
    Bn, D, L, N = shape
    g = torch.Generator(device="cpu").manual_seed(0)

    def r(*s, scale=1.0, offset=0.0, dt=dtype):
        return (torch.randn(*s, generator=g) * scale + offset).to(dt).to(device).requires_grad_(requires_grad)

    u = r(Bn, D, L)
    delta = (0.5 * torch.rand(Bn, D, L, generator=g)).to(dtype).to(device).requires_grad_(requires_grad)
    A = (-torch.rand(D, N, generator=g)).to(device).requires_grad_(requires_grad)
    B = r(Bn, N, L)
    C = r(Bn, N, L)
    Dv = r(D, dt=torch.float32)
    bias = (0.1 * torch.rand(D, generator=g)).to(device).requires_grad_(requires_grad)
    return u, delta, A, B, C, Dv, bias


def timeit(fn, device, reps, warmup=3):
    for _ in range(warmup):
        fn()
    times = []
    if device == "cuda":
        for _ in range(reps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) * 1e-3)
    else:
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_impl(name, scan, shape, dtype, device, reps, backward=True):
    """scan(u, delta, A, B, C, D, bias) -> y; returns (fwd seconds, bwd seconds or nan)."""
    args = inputs(shape, dtype, device, requires_grad=True)
    with torch.no_grad():
        fwd = timeit(lambda: scan(*args), device, reps)
    if not backward:
        return fwd, float("nan")
    y = scan(*args)
    gy = torch.randn_like(y)
    bwd = timeit(lambda: torch.autograd.grad(y, args, gy, retain_graph=True), device, reps)
    return fwd, bwd


def lrnn_scan(u, delta, A, B, C, D, bias):
    return lrnn.functional.selective_scan(u, delta, A, B, C, D, None, bias, True)


def loop_ref_scan(u, delta, A, B, C, D, bias):
    return lrnn_loop_ref(u, delta, A, B, C, D, None, bias, True)[0]


def mamba_kernel_scan():
    """mamba_ssm's kernel through its bare extension `selective_scan_cuda` (built alone by
    benchmarks/cuda/build_mamba_ref.py when the whole package cannot be installed), wrapped in the
    same fwd/bwd calls mamba_ssm's autograd function makes; None when the extension is missing."""
    try:
        import selective_scan_cuda as ext
    except ImportError:
        return None

    class MambaKernel(torch.autograd.Function):
        @staticmethod
        def forward(ctx, u, delta, A, B, C, D, bias):
            B4, C4 = B.unsqueeze(1), C.unsqueeze(1)  # (b, n, l) -> one group
            out, states, *_ = ext.fwd(u, delta, A, B4, C4, D, None, bias, True)
            ctx.save_for_backward(u, delta, A, B4, C4, D, bias, states)
            return out

        @staticmethod
        def backward(ctx, dout):
            u, delta, A, B4, C4, D, bias, states = ctx.saved_tensors
            du, ddelta, dA, dB, dC, dD, dbias, *_ = ext.bwd(u, delta, A, B4, C4, D, None, bias, dout.contiguous(),
                                                            states, None, None, True, False)
            return du, ddelta, dA, dB.squeeze(1), dC.squeeze(1), dD, dbias

    return MambaKernel.apply


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--reps", type=int, default=0, help="timed repetitions (default: 20 cuda, 3 cpu)")
    ap.add_argument("--json", default="")
    ap.add_argument("--with-ref", action="store_true", help="also time the slow pure-PyTorch references")
    ap.add_argument("--only-n", type=int, default=0, help="only the shapes with this state size N")
    ap.add_argument("--only-l", type=int, default=0, help="only the shapes with this sequence length L")
    args = ap.parse_args()
    device = args.device
    reps = args.reps or (20 if device == "cuda" else 3)

    impls = [("lrnn", lrnn_scan)]
    if device == "cuda":
        try:
            from mamba_ssm.ops.selective_scan_interface import selective_scan_fn, selective_scan_ref

            impls.append(("mamba_ssm", lambda u, d, A, B, C, D, b: selective_scan_fn(u, d, A, B, C, D, None, b, True)))
            if args.with_ref:
                impls.append(("mamba_ref", lambda u, d, A, B, C, D, b: selective_scan_ref(u, d, A, B, C, D, None, b,
                                                                                         True)))
        except ImportError as err:
            kernel = mamba_kernel_scan()
            if kernel is not None:
                print(f"# mamba_ssm not importable ({err}); its kernel through the bare extension")
                impls.append(("mamba_ssm", kernel))
            else:
                print(f"# mamba_ssm not importable ({err}); timing lrnn only")
    if device == "cpu" or args.with_ref:
        impls.append(("lrnn_loop_ref", loop_ref_scan))

    shapes = CUDA_SHAPES if device == "cuda" else CPU_SHAPES
    if args.only_n:
        shapes = [s for s in shapes if s[3] == args.only_n]
    if args.only_l:
        shapes = [s for s in shapes if s[2] == args.only_l]
    dtypes = [torch.float32, torch.bfloat16]
    machine = torch.cuda.get_device_name() if device == "cuda" else f"cpu x{torch.get_num_threads()} threads"
    print(f"# {machine}, torch {torch.__version__}, lrnn {lrnn.build_info().get('git_revision', '?')}")
    print(f"{'shape (B,D,L,N)':24} {'dtype':9} {'impl':14} {'fwd ms':>9} {'bwd ms':>9} "
          f"{'fwd/floor':>9} {'bwd/floor':>9} {'vs mamba fwd':>12} {'bwd':>6}")
    rows = []
    for shape in shapes:
        Bn, D, L, N = shape
        elems = Bn * D * L * N
        floor_f, floor_b = max(elems / MUFU_PER_S, 8 * elems / FP32_PER_S), max(elems / MUFU_PER_S, 25 * elems / FP32_PER_S)
        for dtype in dtypes:
            results = {}
            for name, fn in impls:
                if name.endswith("ref") and L * D * Bn > 2**24:
                    continue  # the Python loops take minutes at the large shapes
                try:
                    # the loop references' autograd backward takes minutes: forward only
                    ref = name.endswith("ref")
                    fwd, bwd = bench_impl(name, fn, shape, dtype, device, 1 if ref else reps, backward=not ref)
                except RuntimeError as err:  # e.g. out of memory for a reference
                    print(f"# {name} {shape} {dtype}: {err}")
                    continue
                results[name] = (fwd, bwd)
                m = results.get("mamba_ssm")
                ratio = f"{fwd / m[0]:12.2f} {bwd / m[1]:6.2f}" if m and name != "mamba_ssm" else f"{'':12} {'':6}"
                floors = (f"{floor_f / fwd:9.1%} {floor_b / bwd:9.1%}" if device == "cuda" else f"{'-':>9} {'-':>9}")
                print(f"{str(shape):24} {str(dtype)[6:]:9} {name:14} {fwd * 1e3:9.3f} {bwd * 1e3:9.3f} "
                      f"{floors} {ratio}", flush=True)
                rows.append(dict(shape=shape, dtype=str(dtype), impl=name, fwd_ms=fwd * 1e3, bwd_ms=bwd * 1e3,
                                 compute_floor_fwd_ms=floor_f * 1e3, compute_floor_bwd_ms=floor_b * 1e3))
            if "lrnn" in results and "lrnn_loop_ref" in results:
                print(f"#   lrnn forward is {results['lrnn_loop_ref'][0] / results['lrnn'][0]:.0f}x the Python loop")
            if "lrnn" in results and "mamba_ssm" in results:
                (lf, lb), (mf, mb) = results["lrnn"], results["mamba_ssm"]
                print(f"#   lrnn / mamba_ssm: fwd {lf / mf:.2f}x, bwd {lb / mb:.2f}x (target <= 0.5x)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(machine=machine, torch=torch.__version__, rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
