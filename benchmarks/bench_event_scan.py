"""Benchmark of the fused event scan (lrnn::event_scan) against
  unfused  the transitions exp(Lambda*delta*dt) and inputs g*v materialized as (B, L, P) complex
           tensors, then lrnn::linear_scan;
  jax      S5/Event-SSM's method: jax.lax.associative_scan over (Lambda_bar_k, g*v_k) elements
           (jit-compiled, run in a subprocess; skipped when jax is not installed);
plus the S7 layer two ways: "fused", the layer as shipped (lrnn::mimo_selective_scan: B_k and C_k
formed inside the kernels from x_proj's rows), and "materialized", the earlier composed path kept
here only as the baseline (x_proj's B_k / C_k rows applied to every event as (B, L, 2 P H) float32
tensors, batched matmuls, then lrnn::event_scan with the per-event delta). All S7 rows run in one
subprocess, one after another, each measured from the allocator's state after its inputs exist.

Every measurement runs in its own subprocess so that peak memory is clean: on CUDA the peak
allocated bytes above the inputs (torch.cuda.max_memory_allocated, JAX's peak_bytes_in_use), on
the CPU the growth of the process's peak RSS over its state after building the inputs.
Times are medians over --iters runs after a warm-up, forward and forward+backward (async).

    python benchmarks/bench_event_scan.py --device cuda                     # (8, 65536, 128)
    python benchmarks/bench_event_scan.py --device cpu --B 2 --L 8192 --P 64  # reduced, on the CPU
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def median_time(fn, iters, sync):
    fn()
    sync()
    ts = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        sync()
        ts.append(time.perf_counter() - t0)
    ts.sort()
    return ts[len(ts) // 2]


def torch_worker(a):
    import torch
    sys.path.insert(0, os.path.join(HERE, "..", "python"))
    import lrnn

    dev = a.device
    g = torch.Generator(device="cpu").manual_seed(0)
    B, L, P = a.B, a.L, a.P
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    if a.worker == "s7":
        return [s7_case(a, torch, lrnn, sync, size, method) for size in a.s7.split(",") if size
                for method in ("fused", "materialized")]
    Lam = torch.complex(-0.05 - torch.rand(P, generator=g), torch.randn(P, generator=g)).to(dev)
    delta = (0.01 + torch.rand(P, generator=g)).to(dev)
    dt = torch.rand(B, L, generator=g).to(dev)
    v = torch.randn(B, L, P, dtype=torch.complex64, generator=g).to(dev)
    ins = [t.clone().requires_grad_() for t in (Lam, delta, v)]
    if a.worker == "fused":
        def run(Lam_, delta_, v_):
            return lrnn.event_scan(Lam_, delta_, dt, v_, None, "async")[0]
    else:   # unfused: materialized transitions and inputs, then the generic scan
        def run(Lam_, delta_, v_):
            abar = torch.exp(Lam_ * delta_ * dt[..., None])
            gam = torch.expm1(Lam_ * delta_) / Lam_
            return lrnn.linear_scan(abar, gam * v_)[0]
    fwd = lambda: run(Lam, delta, v)  # noqa: E731
    # the output's gradient made once, outside the timing: in training it is an input that
    # the layer above produces (JAX's grad of sum(real(h)) fuses its cotangent the same way)
    gout = torch.ones(B, L, P, dtype=torch.complex64, device=dev)

    def fwd_bwd():
        h = run(*ins)
        torch.autograd.grad(h, ins, gout)
    return measure(a, torch, fwd, fwd_bwd, sync)


def measure(a, torch, fwd, fwd_bwd, sync):
    """Median times of fwd (no grad) and fwd+bwd, and the peak bytes allocated above the state
    before the first timed call (CUDA: the caching allocator's exact counters; CPU: peak RSS)."""
    with torch.no_grad():
        fwd()
    sync()
    if a.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = rss_bytes()
    out = {}
    with torch.no_grad():
        out["fwd_ms"] = 1e3 * median_time(fwd, a.iters, sync)
    out["fwd_bwd_ms"] = 1e3 * median_time(fwd_bwd, a.iters, sync)
    out["peak_extra_MB"] = ((torch.cuda.max_memory_allocated() if a.device == "cuda" else rss_bytes()) - base) / 2**20
    return out


def s7_materialized(m, x, dt, torch):
    """The S7 layer's earlier composed path (stride 1, unidirectional, no conj_sym factor):
    B_k and C_k as (B, L, 2 P H) float32 tensors from x_proj's rows, contracted by batched
    matmuls around lrnn::event_scan; y = Re(C_k h_k) + D u_k."""
    import torch.nn.functional as F
    from lrnn.functional import event_scan
    r, P, Hi = m.dt_rank, m.P, m.d_model
    W, bias = m.x_proj.weight, m.x_proj.bias
    u = x.float()
    s = F.linear(u, W[:r], bias[:r])
    Bk = torch.view_as_complex(F.linear(u, W[r:r + 2 * P * Hi], bias[r:r + 2 * P * Hi]).unflatten(-1, (P, Hi, 2)))
    delta = m.step_rescale * F.softplus(s @ m.step_proj_kernel + m.step_proj_bias)
    v = torch.matmul(Bk, u.to(Bk.dtype)[..., None])[..., 0]
    h, _ = event_scan(m.Lambda(), delta, dt, v, None, m.discretization)
    o = r + 2 * P * Hi
    Ck = torch.view_as_complex(F.linear(u, W[o:], bias[o:]).unflatten(-1, (m.d_out, -1, 2)))
    y = torch.matmul(Ck, h[..., None])[..., 0].real
    return y + u * m.D


def s7_case(a, torch, lrnn, sync, size, method):
    import gc
    from lrnn.nn import S7
    B, L, P, H = map(int, size.split("x"))
    g = torch.Generator(device="cpu").manual_seed(0)
    m = S7(H, P, conj_sym=False).to(a.device)
    x = torch.randn(B, L, H, generator=g).to(a.device)
    dt = torch.rand(B, L, generator=g).to(a.device)
    run = (lambda: m(x, dt)) if method == "fused" else (lambda: s7_materialized(m, x, dt, torch))  # noqa: E731
    params = list(m.parameters())

    def fwd_bwd():
        torch.autograd.grad(run().sum(), params)

    try:
        r = measure(a, torch, run, fwd_bwd, sync)
    except Exception as e:   # e.g. out of memory: reported as a row, the other rows still run
        r = {"error": f"{type(e).__name__}: {str(e)[:120]}"}
    if method == "fused" and "error" not in r:
        # the op's output against the materialized path on the same parameters (sanity, not timed)
        with torch.no_grad():
            r["max_rel_diff"] = ((run() - s7_materialized(m, x, dt, torch)).abs().max()
                                 / s7_materialized(m, x, dt, torch).abs().max()).item()
    del m, x, dt, params
    gc.collect()
    if a.device == "cuda":
        torch.cuda.empty_cache()
    return {"bench": "s7_layer", "method": method, "B": B, "L": L, "P": P, "H": H, **r}


def jax_worker(a):
    import jax
    import jax.numpy as jnp
    if a.device == "cpu":
        jax.config.update("jax_platform_name", "cpu")
    B, L, P = a.B, a.L, a.P
    k = jax.random.split(jax.random.PRNGKey(0), 5)
    Lam = (-0.05 - jax.random.uniform(k[0], (P,))) + 1j * jax.random.normal(k[1], (P,))
    delta = 0.01 + jax.random.uniform(k[2], (P,))
    dt = jax.random.uniform(k[3], (B, L))
    v = (jax.random.normal(k[4], (B, L, P)) + 1j * jax.random.normal(k[4], (B, L, P))).astype(jnp.complex64)

    def op(x, y):
        a1, b1 = x
        a2, b2 = y
        return a2 * a1, a2 * b1 + b2

    def run(Lam_, delta_, v_):
        abar = jnp.exp(Lam_ * delta_ * dt[..., None])
        gam = jnp.expm1(Lam_ * delta_) / Lam_
        return jax.lax.associative_scan(op, (abar, gam * v_), axis=1)[1]

    fwd = jax.jit(run)
    loss = lambda *x: jnp.sum(jnp.real(run(*x)))  # noqa: E731
    fwd_bwd = jax.jit(jax.grad(loss, argnums=(0, 1, 2), holomorphic=False))
    args = (Lam.astype(jnp.complex64), delta.astype(jnp.float32), v)
    jax.block_until_ready(fwd(*args))
    jax.block_until_ready(fwd_bwd(*args))
    dev = jax.devices()[0]
    stats = dev.memory_stats() if a.device == "cuda" else None
    base = stats["bytes_in_use"] if stats else rss_bytes()
    sync = lambda: None  # noqa: E731
    out = {"fwd_ms": 1e3 * median_time(lambda: jax.block_until_ready(fwd(*args)), a.iters, sync),
           "fwd_bwd_ms": 1e3 * median_time(lambda: jax.block_until_ready(fwd_bwd(*args)), a.iters, sync)}
    if stats:
        out["peak_extra_MB"] = (dev.memory_stats()["peak_bytes_in_use"] - base) / 2**20
    else:
        out["peak_extra_MB"] = (rss_bytes() - base) / 2**20
    return out


def spawn(a, method, **over):
    args = [sys.executable, os.path.abspath(__file__), "--worker", method, "--device", a.device,
            "--iters", str(a.iters)]
    for key in ("B", "L", "P", "H", "s7"):
        args += [f"--{key}", str(over.get(key, getattr(a, key)))]
    env = dict(os.environ)
    if method == "jax":
        env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")   # measure what it uses, not a pool
    r = subprocess.run(args, capture_output=True, text=True, env=env, timeout=a.timeout)
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["failed"]
        return {"error": tail[0][:160]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def scan_rows(a, rows):
    print(f"event scan, (B, L, P) = ({a.B}, {a.L}, {a.P}), complex64 state, async, device {a.device}")
    print(f"{'method':<10}{'fwd ms':>10}{'fwd+bwd ms':>12}{'peak extra MB':>15}")
    for method in ["fused", "unfused"] + ([] if a.no_jax else ["jax"]):
        r = spawn(a, method)
        rows.append({"bench": "event_scan", "method": method, "B": a.B, "L": a.L, "P": a.P, **r})
        if "error" in r:
            print(f"{method:<10}  error: {r['error']}")
        else:
            print(f"{method:<10}{r['fwd_ms']:>10.2f}{r['fwd_bwd_ms']:>12.2f}{r['peak_extra_MB']:>15.1f}")
    ok = {r["method"]: r for r in rows if "error" not in r}
    if "fused" in ok:
        for other in ("unfused", "jax"):
            if other in ok:
                print(f"fused speed-up vs {other}: fwd {ok[other]['fwd_ms'] / ok['fused']['fwd_ms']:.1f}x, "
                      f"fwd+bwd {ok[other]['fwd_bwd_ms'] / ok['fused']['fwd_bwd_ms']:.1f}x")
    if "fused" in ok and a.device == "cuda":
        # The least HBM traffic any implementation needs: the forward reads v and writes h
        # (complex64) and reads dt; the backward reads grad_h, v and h and writes dv.
        n = a.B * a.L * a.P
        fwd_bytes = 2 * 8 * n + 4 * a.B * a.L
        bwd_bytes = 2 * fwd_bytes + 2 * 8 * n
        f_ms, b_ms = 1e3 * fwd_bytes / a.bw, 1e3 * bwd_bytes / a.bw
        r = ok["fused"]
        print(f"memory floor at {a.bw / 1e12:.2f} TB/s: fwd {f_ms:.3f} ms, fwd+bwd {b_ms:.3f} ms; "
              f"fused reaches {100 * f_ms / r['fwd_ms']:.0f}% / {100 * b_ms / r['fwd_bwd_ms']:.0f}% of it")
        rows.append({"bench": "event_scan_floor", "bw": a.bw, "fwd_ms": f_ms, "fwd_bwd_ms": b_ms})


def s7_rows(a, rows):
    res = spawn(a, "s7")
    if isinstance(res, dict):   # the worker failed as a whole
        print(f"S7 rows: error: {res['error']}")
        return
    rows.extend(res)
    print(f"S7 layer (conj_sym off, async, stride 1), device {a.device}: fused = lrnn::mimo_selective_scan, "
          f"materialized = B_k/C_k as tensors")
    print(f"{'(B, L, P, H)':<22}{'method':<14}{'fwd ms':>9}{'fwd+bwd ms':>12}{'peak extra MB':>15}")
    for r in res:
        key = f"({r['B']}, {r['L']}, {r['P']}, {r['H']})"
        if "error" in r:
            print(f"{key:<22}{r['method']:<14}  error: {r['error']}")
        else:
            print(f"{key:<22}{r['method']:<14}{r['fwd_ms']:>9.2f}{r['fwd_bwd_ms']:>12.2f}{r['peak_extra_MB']:>15.1f}"
                  + (f"   (max rel diff vs materialized {r['max_rel_diff']:.1e})" if "max_rel_diff" in r else ""))
    ok = {(r["B"], r["L"], r["P"], r["H"], r["method"]): r for r in res if "error" not in r}
    for (B, L, P, H, meth), f in ok.items():
        mat = ok.get((B, L, P, H, "materialized"))
        if meth == "fused" and mat:
            print(f"({B}, {L}, {P}, {H}): fused vs materialized: fwd {mat['fwd_ms'] / f['fwd_ms']:.2f}x, "
                  f"fwd+bwd {mat['fwd_bwd_ms'] / f['fwd_bwd_ms']:.2f}x faster; peak extra memory "
                  f"{f['peak_extra_MB']:.0f} MB vs {mat['peak_extra_MB']:.0f} MB")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--B", type=int, default=8)
    p.add_argument("--L", type=int, default=65536)
    p.add_argument("--P", type=int, default=128)
    p.add_argument("--H", type=int, default=64)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--timeout", type=int, default=300)
    p.add_argument("--s7", default="8x16384x16x64,8x4096x64x128", help="S7 sizes BxLxPxH ('' to skip)")
    p.add_argument("--no-scan", action="store_true", help="only the S7 rows")
    # accepted for tests/gpu/event.sh, which still passes it; S7 has no chunked variant any more
    p.add_argument("--chunk", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--no-jax", action="store_true")
    p.add_argument("--bw", type=float, default=4.24e12,
                   help="device copy bandwidth in bytes/s for the memory floor (default: the H200's measured copy rate)")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        print(json.dumps(jax_worker(a) if a.worker == "jax" else torch_worker(a)))
        return
    rows = []
    if not a.no_scan:
        scan_rows(a, rows)
    if a.s7:
        s7_rows(a, rows)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
