"""ss5_prof.py: where the selective-scan wall time goes on the GPU (tests/gpu/ss5.sh).

For one shape and dtype (inputs as benchmarks/bench_selective_scan.py: variable B/C, softplus,
delta_bias, D, no z) it prints, for the forward, the autograd backward and the bare backward op:
  wall   CUDA-event time of one call on an idle GPU (what the benchmark reports)
  cpu    host time until the call returns (launch path: Python, autograd, checks, allocations)
  dev    summed device time of the call's kernels (torch.profiler), and per kernel below it
The gap wall - dev is time the GPU sat idle inside the timed region (host overhead, launch gaps).
    python tests/gpu/ss5_prof.py [B D L N] [float32|bfloat16] [fwd,bwd,bwd_op]
"""
import statistics
import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile

import lrnn  # noqa: F401

sys.path.insert(0, "benchmarks")
from bench_selective_scan import inputs  # noqa: E402

shape = tuple(int(x) for x in sys.argv[1:5]) if len(sys.argv) >= 5 else (8, 1536, 2048, 16)
dtype = getattr(torch, sys.argv[5] if len(sys.argv) >= 6 else "float32")
args = inputs(shape, dtype, "cuda", requires_grad=True)
u, delta, A, B, C, Dv, bias = args


def fwd():
    with torch.no_grad():
        return lrnn.functional.selective_scan(u, delta, A, B, C, Dv, None, bias, True)


y = lrnn.functional.selective_scan(u, delta, A, B, C, Dv, None, bias, True)
gy = torch.randn_like(y)
_, _, cs = torch.ops.lrnn.selective_scan(u, delta, A, B, C, Dv, None, bias, True, None, None)


def bwd():
    return torch.autograd.grad(y, args, gy, retain_graph=True)


def bwd_op():
    return torch.ops.lrnn.selective_scan_backward(gy, None, u, delta, A, B, C, Dv, None, bias, True, None, None, cs)


def measure(fn, reps=10):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    walls, cpus = [], []
    for _ in range(reps):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        t0 = time.perf_counter()
        fn()
        cpus.append(time.perf_counter() - t0)
        e1.record()
        torch.cuda.synchronize()
        walls.append(e0.elapsed_time(e1) * 1e-3)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            fn()
        torch.cuda.synchronize()
    kern = {}
    for ev in prof.events():
        if ev.device_type == torch.autograd.DeviceType.CUDA:
            kern[ev.name] = kern.get(ev.name, 0.0) + ev.device_time * 1e-6 / reps  # us -> s per call
    return statistics.median(walls), statistics.median(cpus), kern


def short(name):
    for key in ("selective_scan_", "reduce", "elementwise", "copy", "fill", "memset", "Memset"):
        i = name.find(key)
        if i >= 0:
            return name[i:i + 60].split("(")[0]
    return name[:60]


print(f"# {shape} {str(dtype)[6:]}")
which = sys.argv[6].split(",") if len(sys.argv) >= 7 else ["fwd", "bwd", "bwd_op"]
for tag, fn in (("fwd", fwd), ("bwd", bwd), ("bwd_op", bwd_op)):
    if tag not in which:
        continue
    wall, cpu, kern = measure(fn)
    dev = sum(kern.values())
    print(f"{tag:7} wall {wall * 1e3:7.3f} ms  cpu {cpu * 1e3:7.3f} ms  dev {dev * 1e3:7.3f} ms  gap {(wall - dev) * 1e3:7.3f} ms",
          flush=True)
    for name, t in sorted(kern.items(), key=lambda kv: -kv[1]):
        print(f"          {t * 1e3:7.3f} ms  {short(name)}")
