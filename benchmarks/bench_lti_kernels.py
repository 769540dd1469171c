"""Benchmark of the kernel-generation ops of the time-invariant models: lrnn::ssm_kernel
(Vandermonde) and lrnn::cauchy against their pure-PyTorch references (lrnn.reference, which
materialize (H, N, L) complex tensors), forward and forward+backward, on the CPU and, when present,
the GPU, side by side.

Reported per row: median time of the forward, or of the forward and the backward from a given
output gradient ("fwd+bwd"; with --upstream sum, "fwd+sum": from out.sum(), which adds the loss's
reduction and the gradient tensor it creates; both return the inputs' gradients through
torch.autograd.grad, as a step after zero_grad() does, instead of adding them to .grad, which
repeated .backward() calls did until 2026-11-29, with two extra elementwise kernels per call) (CUDA: CUDA events around back-to-back replays of a CUDA graph of
the call, so the host's dispatch and autograd overhead is not counted; the references, whose
graphs would double their many-GiB footprint, are timed the same way without a graph; CPU: wall
clock), peak memory (CUDA: measured with torch.cuda.max_memory_allocated; CPU: the size of the
tensors the algorithm must hold, computed, marked "~"), and for the ops the fraction of the
arithmetic floor: the instructions the math needs per (h, n, l), divided by the device's issue
rate (GPU: SMs x 4 schedulers x 32 lanes x clock = SMs x 128 x clock FP32 lanes per second).
The counts (INSTR) are the fewest we know how to evaluate the formulas with:
  ssm_kernel forward 2: K[l0 + 64 t + j] = Re sum_n (w z^(l0 + 64 t))_n (z^j)_n is the real part of
    a complex matrix product, i.e. a real product with 2 FMAs per (n, l) (the powers are O(sqrt L)
    per state and not counted). Backward 4: sum_l dK z^l and sum_l l dK z^l are one real product of
    dK (as a 64 x 64 tile) with (Re z^j, Im z^j, j Re z^j, j Im z^j). In float both products run
    on the tensor cores in 3xTF32 (three TF32 MMAs per product, float-level accuracy); on the
    H200 the rate of the legacy mma.sync TF32 instruction makes that about as fast per FMA as the
    FP32 pipe (Nsight Compute: the forward is bound by the tensor pipe's throttle), so the floor
    stays the FP32 FMA count.
  cauchy (symmetric, as benchmarked) forward 15: a conjugate pair v/(w - lam) + conj(v)/(w - conj lam)
    = N / D with D = (w - lam)(w - conj lam) and N = c0 w + c1 (c0, c1 real constants of the state), so
    the sum over states is w sum c0 R + sum c1 R with R = 1/D: D 6 (formed without cancellation of
    large terms), |D|^2 2, one reciprocal (an issue slot too), R 2 and the two complex sums 4
    (csrc/cuda/cauchy.cu, pair_term). Backward 22: both terms of a pair over the same D with one
    reciprocal: R as in the forward (11), R^2 (3) and the real parts of u R, U R, u R^2, U R^2 (8),
    where u = conj(G) and U = w conj(G) are constants of the node (bwd_pair); the per-state
    gradients follow from these four sums.
Earlier counts (5 and 8 for ssm_kernel: a power recurrence, a complex multiply and an add per
element; 20 and 40 for cauchy: two separate quotients; then 33 for the cauchy backward: its two
terms separately, then 27, 25; and 17 for the cauchy forward, which formed the numerator per
element) described a particular evaluation, not the minimum, and made the fractions look
better than they were.

    python benchmarks/bench_lti_kernels.py [--device cpu|cuda|all] [--shapes 1024,64,4096 ...]
                                           [--impls op ref] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time

import torch

import lrnn
from lrnn.reference import cauchy_ref, ssm_kernel_ref

SHAPES = [(1024, 64, 4096), (256, 64, 65536)]
INSTR = {  # issue slots per (h, n, l), see the module docstring: (forward, forward+backward)
    "ssm_kernel": (2, 2 + 4),
    "cauchy": (15, 15 + 22),
}


def gpu_issue_rate() -> tuple[float, str]:
    props = torch.cuda.get_device_properties(0)
    clock_ghz, source = 1.98, "assumed H200 boost clock 1.98 GHz"
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=clocks.max.sm", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10).stdout.split()
        if out:
            clock_ghz, source = float(out[0]) / 1000, f"nvidia-smi max SM clock {out[0]} MHz"
    except (OSError, ValueError, subprocess.TimeoutExpired):
        pass
    return props.multi_processor_count * 128 * clock_ghz * 1e9, f"{props.multi_processor_count} SMs, {source}"


def timeit(fn, device: str, min_time: float = 0.5, max_reps: int = 50) -> float:
    """Median seconds of fn() after one warm-up call; a warm-up slower than 2 s is the measurement
    (the materializing references at large shapes on the CPU)."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    first = time.perf_counter() - t0
    if first > 2.0:
        return first
    times, total = [], 0.0
    while (total < min_time or len(times) < 3) and len(times) < max_reps:
        t0 = time.perf_counter()
        fn()
        sync()
        dt = time.perf_counter() - t0
        times.append(dt)
        total += dt
    return statistics.median(times)


def timeit_cuda(fn, graph: bool, reps: int = 20, rounds: int = 7) -> tuple[float, str]:
    """Median over rounds of (CUDA-event time of `reps` back-to-back calls) / reps. With graph, the
    calls are replays of a CUDA graph captured from fn (after a warm-up on a side stream, as
    capture requires); a capture that fails falls back to plain calls, and the method is returned."""
    fn()
    torch.cuda.synchronize()
    run, method, g = fn, "stream", None
    if graph:
        try:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                fn()
            torch.cuda.current_stream().wait_stream(side)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                fn()
            run, method = g.replay, "graph"
        except RuntimeError as e:  # capture unsupported for this call: time it uncaptured
            print(f"  (graph capture failed, timing plain calls: {str(e).splitlines()[0][:80]})")
            g = None
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(rounds):
        start.record()
        for _ in range(reps):
            run()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3 / reps)
    del g
    return statistics.median(times), method


def peak_bytes(fn, device: str) -> int | None:
    if device != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def inputs(op: str, H: int, N: int, L: int, device: str, grad: bool):
    g = torch.Generator().manual_seed(0)
    if op == "ssm_kernel":
        z = torch.complex(-(1e-3 + 0.5 * torch.rand(H, N, generator=g)), 6 * torch.rand(H, N, generator=g) - 3)
        w = torch.complex(torch.randn(H, N, generator=g), torch.randn(H, N, generator=g))
        return [w.to(device).requires_grad_(grad), z.to(device).requires_grad_(grad)], L
    v = torch.complex(torch.randn(H, N, generator=g), torch.randn(H, N, generator=g))
    lam = torch.complex(-(0.1 + torch.rand(H, N, generator=g)), 6 * torch.rand(H, N, generator=g) - 3)
    omega = torch.complex(torch.zeros(L), 8 * torch.rand(L, generator=g) - 4)
    return [v.to(device).requires_grad_(grad), omega.to(device), lam.to(device).requires_grad_(grad)], L


def call(op: str, impl: str, args, L: int):
    if op == "ssm_kernel":
        f = lrnn.ssm_kernel if impl == "op" else ssm_kernel_ref
        return f(args[0], args[1], L)
    f = lrnn.cauchy if impl == "op" else cauchy_ref
    return f(*args)


def model_bytes(op: str, impl: str, H: int, N: int, L: int, backward: bool) -> int:
    """Bytes the algorithm must hold at its peak (CPU estimate): the op holds inputs and the (H, L)
    output; the reference holds (H, N, L) complex64 intermediates (2 forward, ~4 with backward)."""
    out = H * L * (4 if op == "ssm_kernel" else 8) * (2 if backward else 1)
    if impl == "op":
        return out + 4 * H * N * 8
    return out + (4 if backward else 2) * H * N * L * 8


def bench_one(op, impl, shape, device, backward, rate, ref_limit, upstream="given"):
    H, N, L = shape
    if impl == "ref" and model_bytes(op, impl, H, N, L, backward) > ref_limit:
        return {"skipped": f"needs ~{model_bytes(op, impl, H, N, L, backward) / 2**30:.1f} GiB"}
    args, L = inputs(op, H, N, L, device, backward)
    # the output gradient of the op's backward: fixed random values ("given"), or from a sum loss
    # ("sum": the loss's reduction and the gradient it creates are timed too)
    grad = torch.randn(H, L, device=device, dtype=torch.float32 if op == "ssm_kernel" else torch.complex64)

    # the gradients of the inputs are returned (torch.autograd.grad), not accumulated into .grad: a
    # training step starts from .grad = None (zero_grad's default), where accumulating costs no
    # kernel, while repeated .backward() calls would add two elementwise kernels per call
    wrt = [a for a in args if a.requires_grad]

    def run():
        out = call(op, impl, args, L)
        if backward and upstream == "given":
            torch.autograd.grad(out, wrt, grad)
        elif backward:
            torch.autograd.grad(out.real.sum() if out.is_complex() else out.sum(), wrt)
        return out

    if device == "cuda":
        t, method = timeit_cuda(run, graph=impl == "op", reps=20 if impl == "op" else 3,
                                rounds=7 if impl == "op" else 3)
    else:
        t, method = timeit(run, device, min_time=1.0, max_reps=3), "wall"
    mem = peak_bytes(run, device)
    row = {"time_s": t, "timing": method, "peak_bytes": mem if mem is not None else model_bytes(op, impl, H, N, L, backward),
           "peak_measured": mem is not None}
    if impl == "op" and rate:
        instr = INSTR[op][1 if backward else 0] * H * N * L
        row["floor_s"] = instr / rate
        row["floor_fraction"] = row["floor_s"] / t
    return row


def print_row(r: dict, results: list, flush: bool = False):
    """One table row, printed as soon as it is measured (a timeout keeps what was printed). The
    reference row carries the op's speed-up over it."""
    shape = "(%d, %d, %d)" % r["shape"]
    if "skipped" in r:
        print(f"{r['device']:6} {r['op']:10} {shape:18} {r['pass_']:8} {r['impl']:4} skipped: {r['skipped']}",
              flush=flush)
        return
    mem = ("" if r["peak_measured"] else "~") + f"{r['peak_bytes'] / 2**20:.1f} MiB"
    floor = f"{r['floor_s'] * 1e3:.3f} ms" if "floor_s" in r else "-"
    frac = f"{100 * r['floor_fraction']:.0f}%" if "floor_fraction" in r else "-"
    speed = "-"
    if r["impl"] == "ref":
        op = next((x for x in results if x["impl"] == "op" and x["device"] == r["device"] and
                   x["op"] == r["op"] and x["shape"] == r["shape"] and x["pass_"] == r["pass_"]), None)
        if op and "time_s" in op:
            speed = f"{r['time_s'] / op['time_s']:.1f}x"
    print(f"{r['device']:6} {r['op']:10} {shape:18} {r['pass_']:8} {r['impl']:4} {r['time_s'] * 1e3:8.3f}ms "
          f"{mem:>12} {floor:>9} {frac:>8} {speed:>9} {r['timing']:>6}", flush=flush)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="all", choices=["cpu", "cuda", "all"])
    ap.add_argument("--shapes", nargs="*", default=None, help="H,N,L triples")
    ap.add_argument("--ops", nargs="*", default=["ssm_kernel", "cauchy"])
    ap.add_argument("--impls", nargs="*", default=["op", "ref"], choices=["op", "ref"],
                    help="'op' alone skips the slow materializing references")
    ap.add_argument("--ref-limit-gib", type=float, default=None,
                    help="skip references needing more memory (default: 6 GiB CPU, 100 GiB GPU)")
    ap.add_argument("--upstream", nargs="+", default=["given"], choices=["given", "sum"],
                    help="forward+backward rows: backward from a fixed random output gradient (the op "
                         "alone, default) and/or from out.sum() (adds the loss's reduction and gradient)")
    ap.add_argument("--variant", nargs="*", default=[], metavar="OP:PASS:NAME=VALUE",
                    help="then OP's PASS (fwd or fwd+bwd) rows again with the environment setting NAME=VALUE "
                         "(a kernel's launch-time choice, for measuring the choices on the device)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    shapes = [tuple(int(x) for x in s.split(",")) for s in a.shapes] if a.shapes else SHAPES
    devices = ["cpu", "cuda"] if a.device == "all" else [a.device]
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    results = []
    print(f"lrnn {lrnn.build_info().get('git_revision', '?')}, torch {torch.__version__}, "
          f"CPU threads {torch.get_num_threads()}")
    header = (f"{'device':6} {'op':10} {'(H, N, L)':18} {'pass':8} {'impl':4} {'time':>10} {'peak mem':>12} "
              f"{'floor':>9} {'of floor':>8} {'op faster':>9} {'timing':>6}")
    for device in devices:
        rate, rate_note = (gpu_issue_rate() if device == "cuda" else (None, "no CPU floor"))
        if device == "cuda":
            print(f"cuda: {torch.cuda.get_device_name(0)}; FP32 issue rate {rate / 1e12:.1f} T/s ({rate_note})")
        print(header, flush=True)
        limit = (a.ref_limit_gib or (100 if device == "cuda" else 6)) * 2**30
        for op in a.ops:
            for shape in shapes:
                for backward, upstream in [(False, None)] + [(True, u) for u in a.upstream]:
                    for impl in a.impls:
                        row = bench_one(op, impl, shape, device, backward, rate, limit, upstream)
                        row.update(device=device, op=op, impl=impl, shape=shape, upstream=upstream,
                                   pass_=("fwd+bwd" if upstream == "given" else "fwd+sum") if backward else "fwd")
                        results.append(row)
                        print_row(row, results, flush=True)
                        if a.json:  # rewritten after every row, like the table, for partial runs
                            with open(a.json, "w") as f:
                                json.dump(results, f, indent=1)
                        if device == "cuda":
                            torch.cuda.empty_cache()
        for spec in a.variant:
            op, pass_, var = spec.split(":", 2)
            name, _, value = var.partition("=")
            os.environ[name] = value
            if op in a.ops:
                for shape in shapes:
                    backward = pass_ != "fwd"
                    row = bench_one(op, "op", shape, device, backward, rate, limit, "given")
                    row.update(device=device, op=op, impl="op", shape=shape, upstream="given" if backward else None,
                               variant=var, pass_=f"{'fwd+bwd' if backward else 'fwd'} {var}")
                    results.append(row)
                    print_row(row, results, flush=True)
            del os.environ[name]
        if a.json and a.variant:
            with open(a.json, "w") as f:
                json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
