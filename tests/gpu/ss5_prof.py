"""ss5_prof.py: where the selective-scan time goes on the GPU, in ONE process (a fresh CUDA process
costs seconds on the device box; tests/gpu/ss5.sh has 45 s). Inputs as
benchmarks/bench_selective_scan.py (variable B/C, softplus, delta_bias, D, no z). Printed as it goes:
  1. device time per kernel of the bare backward op and of the forward at (8, 1536, 2048, 16), f32
     and bf16, and at (2, 1536, 16384, 16) f32 (time split: local, combine, tile, reduce kernels)
  2. wall / host / device time of the forward, the autograd backward and the bare backward op
     (wall: CUDA events on an idle GPU, as the benchmark; host: until the call returns; device:
     the kernels' summed time; wall - device: GPU idle inside the timed region)
  3. the host-side ops of the autograd backward by self CPU time (what the host overhead is)
  4. the benchmark rows (lrnn) at N = 16, both shapes and dtypes
    python tests/gpu/ss5_prof.py
"""
import os
import statistics
import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile

import lrnn  # noqa: F401

sys.path.insert(0, "benchmarks")
import bench_selective_scan as bench  # noqa: E402

SHORT, LONG = (8, 1536, 2048, 16), (2, 1536, 16384, 16)


class Case:
    def __init__(self, shape, dtype):
        self.args = bench.inputs(shape, dtype, "cuda", requires_grad=True)
        u, delta, A, B, C, Dv, bias = self.args
        self.y = lrnn.functional.selective_scan(u, delta, A, B, C, Dv, None, bias, True)
        self.gy = torch.randn_like(self.y)
        with torch.no_grad():
            self.cs = torch.ops.lrnn.selective_scan(u, delta, A, B, C, Dv, None, bias, True, None, None)[2]

    def fwd(self):
        u, delta, A, B, C, Dv, bias = self.args
        with torch.no_grad():
            return lrnn.functional.selective_scan(u, delta, A, B, C, Dv, None, bias, True)

    def bwd(self):
        return torch.autograd.grad(self.y, self.args, self.gy, retain_graph=True)

    def bwd_op(self):
        u, delta, A, B, C, Dv, bias = self.args
        return torch.ops.lrnn.selective_scan_backward(self.gy, None, u, delta, A, B, C, Dv, None, bias, True, None,
                                                      None, self.cs)


def short_name(name):
    for key in ("selective_scan_", "elementwise", "copy", "fill", "Memset", "Memcpy"):
        i = name.find(key)
        if i >= 0:
            n = name[i:].split("(")[0]
            return n.replace("lrnn_ss::(anonymous namespace)::", "")[:70]
    return name[:60]


def device_times(fn, reps=5):
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            fn()
        torch.cuda.synchronize()
    kern = {}
    for ev in prof.events():
        if ev.device_type == torch.autograd.DeviceType.CUDA:
            kern[short_name(ev.name)] = kern.get(short_name(ev.name), 0.0) + ev.device_time * 1e-3 / reps  # ms
    return kern


def wall_host(fn, reps=10):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    walls, hosts = [], []
    for _ in range(reps):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        t0 = time.perf_counter()
        fn()
        hosts.append((time.perf_counter() - t0) * 1e3)
        e1.record()
        torch.cuda.synchronize()
        walls.append(e0.elapsed_time(e1))
    return statistics.median(walls), statistics.median(hosts)


def kernels_line(kern):
    return " + ".join(f"{k.split('<')[0].replace('selective_scan_', '')} {v:.3f}" for k, v in
                      sorted(kern.items(), key=lambda kv: -kv[1]))


def section(fn):
    try:
        fn()
    except Exception as err:  # keep the later sections' numbers
        print(f"!! {fn.__name__}: {type(err).__name__}: {err}", flush=True)


def main():
    print(f"# {torch.cuda.get_device_name()}, torch {torch.__version__}, lrnn {lrnn.build_info().get('git_revision')}",
          flush=True)
    cases = {}

    def kernels():
        print("== 1. device ms per kernel: bare backward op and forward", flush=True)
        cases["s32"] = Case(SHORT, torch.float32)
        cases["s16"] = Case(SHORT, torch.bfloat16)
        for key in ("s32", "s16"):
            print(f"{key} bwd_op: {kernels_line(device_times(cases[key].bwd_op))}", flush=True)
            print(f"{key} fwd: {kernels_line(device_times(cases[key].fwd))}", flush=True)

    def long_shape():
        long32 = Case(LONG, torch.float32)
        print(f"long f32 bwd_op: {kernels_line(device_times(long32.bwd_op))}", flush=True)
        print(f"long f32 fwd: {kernels_line(device_times(long32.fwd))}", flush=True)

    def wall_host_dev():
        print("== 2. wall / host / device ms", flush=True)
        for tag, key in (("short f32", "s32"), ("short bf16", "s16")):
            for what in ("fwd", "bwd", "bwd_op"):
                fn = getattr(cases[key], what)
                wall, host = wall_host(fn)
                dev = sum(device_times(fn).values())
                print(f"{tag:10} {what:6} wall {wall:6.3f} host {host:6.3f} dev {dev:6.3f} idle {wall - dev:6.3f}",
                      flush=True)

    def host_ops():
        print("== 3. host ops of the autograd backward (short f32), by self CPU time", flush=True)
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(5):
                cases["s32"].bwd()
            torch.cuda.synchronize()
        rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:14]
        for e in rows:
            print(f"  {e.self_cpu_time_total / 5:8.1f} us self  {e.cpu_time_total / 5:8.1f} us total  x{e.count // 5:<3} "
                  f"{e.key[:70]}", flush=True)

    def bench_rows():
        print("== 4. benchmark rows (lrnn, reps 10)", flush=True)
        for shape in (SHORT, LONG):
            for dtype in (torch.float32, torch.bfloat16):
                fwd, bwd = bench.bench_impl("lrnn", bench.lrnn_scan, shape, dtype, "cuda", 10)
                print(f"{str(shape):24} {str(dtype)[6:]:9} {'lrnn':14} {fwd * 1e3:9.3f} {bwd * 1e3:9.3f}", flush=True)

    for fn in (kernels, long_shape, wall_host_dev, host_ops, bench_rows):
        section(fn)


if __name__ == "__main__":
    main()
