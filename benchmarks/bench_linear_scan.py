"""benchmarks/bench_linear_scan.py: lrnn::linear_scan against its anchors, on CUDA or the CPU.

    python benchmarks/bench_linear_scan.py                 # CUDA: the issue's target shapes
    python benchmarks/bench_linear_scan.py --device cpu    # CPU: (B, L, D) = (8, 4096, 256)
    options: --out DIR (default benchmarks/results), --quick (fewer cells), --no-compile,
             --no-loop / --loop-fwd-only (the Python-loop reference on no / forward cells only; on
             CUDA forward cells only anyway),
             --cells REGEX / --providers REGEX (a subset), --budget SECONDS (cells left after that
             are marked skipped, so that the table, JSON and plot are always written; 185 on CUDA
             by default: a whole run takes at most about 200 s)

Providers: lrnn (the op on the device), the pure-PyTorch loop lrnn.reference.linear_scan_ref
(only at short lengths: it launches a few kernels per time step), a torch.compile'd parallel
scan (torch's associative_scan; forward only where its backward is impractical), and, when
importable, accelerated_scan (warp = CUDA, scalar = Triton; channel-major, real) and FLA's HGRN
ops (chunk and fused-recurrent; time-major, real, gates given as log a). Anchors run only in
their native layout and on what they support; every other cell says why it was skipped.

Bytes (the floor's numerator) per element of (B, L, D), s = element size: forward reads a and b
and writes h (3s; 2s when a is time-invariant); forward+backward adds reading grad_h, a, h and
writing da, db (8s in total; 5s with a time-invariant a, whose da is (B, D)).
"""
from __future__ import annotations

import argparse
import atexit
import importlib.util
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from harness import Cell, Provider, Skip  # noqa: E402

import lrnn  # noqa: E402

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "complex64": torch.complex64}
LOOP_MAX_L = 4096  # the Python loop beyond this takes seconds per call


def make_cell(B, L, D, dtype, layout, a_mode, mode) -> Cell:
    s = torch.empty((), dtype=DTYPES[dtype]).element_size()
    n = B * L * D
    if a_mode == "full":
        nbytes = 3 * s * n if mode == "fwd" else 8 * s * n
    else:
        nbytes = (2 * s * n if mode == "fwd" else 5 * s * n) + s * D
    variant = layout if a_mode == "full" else f"{layout}, a (D,)"
    return Cell(name=f"B={B} L={L} D={D}", dtype=dtype, variant=variant, mode=mode, bytes=nbytes,
                params=dict(B=B, L=L, D=D, layout=layout, a_mode=a_mode))


def make_inputs(cell: Cell, device: str, seed: int = 0):
    """a (|a| in [0.5, 0.95], positive so log-gate anchors can use it), b, and an upstream
    gradient, in the cell's layout. Complex a has a small phase."""
    p = cell.params
    B, L, D = p["B"], p["L"], p["D"]
    dt = DTYPES[cell.dtype]
    gen = torch.Generator(device=device).manual_seed(seed)

    def seq(fill):
        shape = (B, D, L) if p["layout"] == "channel-major" else (B, L, D)
        t = fill(shape)
        return t.transpose(1, 2) if p["layout"] == "channel-major" else t

    def rand_a(shape):
        mag = torch.rand(shape, generator=gen, device=device) * 0.45 + 0.5
        if dt.is_complex:
            phase = (torch.rand(shape, generator=gen, device=device) - 0.5) * 0.2
            return torch.polar(mag, phase).to(dt)
        return mag.to(dt)

    def rand_x(shape):
        real = torch.randn(shape, generator=gen, device=device)
        if dt.is_complex:
            return torch.complex(real, torch.randn(shape, generator=gen, device=device)).to(dt)
        return real.to(dt)

    a = seq(rand_a) if p["a_mode"] == "full" else rand_a((D,))
    return a, seq(rand_x), seq(rand_x)


def _fwd_bwd(fn, inputs, grad):
    """A callable running fn forward and backward with the given upstream gradient."""
    inputs = [t.detach().requires_grad_() for t in inputs]

    def step():
        out = fn(*inputs)
        return torch.autograd.grad(out, inputs, grad)
    return step


def with_note(fn, note: str):
    fn.note = note
    return fn


def lrnn_setup(cell: Cell, device: str):
    a, b, g = make_inputs(cell, device)
    if cell.mode == "fwd":
        return lambda: torch.ops.lrnn.linear_scan(a, b, None, False)
    return _fwd_bwd(lambda a, b: torch.ops.lrnn.linear_scan(a, b, None, False)[0], (a, b), g)


def _check_against_lrnn(h: torch.Tensor, a, b, cell: Cell) -> str:
    """A note when an anchor's forward differs from lrnn's (wrong use of its API, or precision)."""
    ref, _ = torch.ops.lrnn.linear_scan(a, b, None, False)
    err = ((h.to(ref.dtype) - ref).abs().max() / ref.abs().max().clamp_min(1e-12)).item()
    limit = 2e-2 if cell.dtype == "bfloat16" else 1e-4
    return "" if err <= limit else f"differs from lrnn: max err {err:.2g} x max|h|"


def loop_setup(cell: Cell, device: str, fwd_only: bool = False):
    # on CUDA its backward (autograd through L steps of small kernels) takes seconds per call
    if (fwd_only or device.startswith("cuda")) and cell.mode != "fwd":
        raise Skip("time budget: the loop's forward only (a fwd+bwd call takes seconds)")
    if cell.params["L"] > LOOP_MAX_L:
        raise Skip(f"Python loop too slow at L > {LOOP_MAX_L}")
    if cell.dtype != "float32" or cell.params["a_mode"] != "full":
        raise Skip("time budget: the loop runs on the float32 full-a cells only")
    a, b, g = make_inputs(cell, device)
    ref = lambda a, b: lrnn.reference.linear_scan_ref(a, b)[0]  # noqa: E731
    if cell.mode == "fwd":
        return lambda: ref(a, b)
    return _fwd_bwd(ref, (a, b), g)


def _combine(x, y):
    """(a1, b1) then (a2, b2): x -> a2 * (a1 * x + b1) + b2."""
    return y[0] * x[0], y[0] * x[1] + y[1]


COMPILED_LOOP_MAX_L = 256  # Inductor unrolls the loop: ~36 s to compile at L = 256 on 2 cores


def compiled_loop_setup(cell: Cell, device: str):
    """CPU: torch.compile of the reference loop (Inductor fuses the unrolled steps into one kernel)."""
    if cell.params["L"] > COMPILED_LOOP_MAX_L:
        raise Skip(f"compiling the unrolled loop at L > {COMPILED_LOOP_MAX_L} takes many minutes")
    a, b, g = make_inputs(cell, device)
    compiled = torch.compile(lambda a, b: lrnn.reference.linear_scan_ref(a, b)[0], fullgraph=True, dynamic=False)
    t0 = time.perf_counter()
    if cell.mode == "fwd":
        compiled(a, b)
        fn = lambda: compiled(a, b)  # noqa: E731
    else:
        fn = _fwd_bwd(compiled, (a, b), g)
        fn()
    return with_note(fn, f"first call (compile) {time.perf_counter() - t0:.1f} s")


def compiled_setup(allow: set):
    def setup(cell: Cell, device: str):
        key = (cell.dtype, cell.params["layout"], cell.params["a_mode"], cell.mode)
        if not device.startswith("cuda"):
            return compiled_loop_setup(cell, device)
        if cell.mode != "fwd":
            raise Skip("associative_scan's backward is ~500x off the floor (kernels.md §3.1)")
        if key not in allow:
            raise Skip("compile budget: only the float32 channel-major forward")
        from torch._higher_order_ops.associative_scan import associative_scan

        def scan(a, b):
            a = a.expand(b.shape)
            return associative_scan(_combine, (a, b), dim=1, combine_mode="pointwise")[1]

        a, b, _ = make_inputs(cell, device)
        compiled = torch.compile(scan, fullgraph=True, dynamic=False)
        t0 = time.perf_counter()
        h = compiled(a, b)
        harness._sync(device)
        note = f"first call (compile) {time.perf_counter() - t0:.1f} s"
        mismatch = _check_against_lrnn(h, a, b, cell)
        return with_note(lambda: compiled(a, b), "; ".join(x for x in (note, mismatch) if x))
    return setup


class WarpBuild:
    """accelerated_scan.warp compiles its CUDA extension (torch load_inline) when imported, which
    takes longer than the rest of a run: a child process starts that build when the benchmark
    starts, into torch's extension cache, while lrnn's cells are timed; the provider waits for it
    (at most until the time budget is spent) and then imports the built module."""
    proc: Optional[subprocess.Popen] = None
    log: Optional[Path] = None

    @classmethod
    def start(cls, out_dir: Path) -> None:
        if importlib.util.find_spec("accelerated_scan") is None:
            return
        out_dir.mkdir(parents=True, exist_ok=True)
        cls.log = out_dir / "accelerated_scan_warp_build.log"
        with open(cls.log, "w") as f:
            # its own session: a time limit's signal to this process group does not cut it hard
            cls.proc = subprocess.Popen([sys.executable, "-c", "import accelerated_scan.warp"], stdout=f,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        atexit.register(cls.stop)

    @classmethod
    def stop(cls) -> None:
        """An unfinished build is interrupted when the benchmark ends: SIGINT, so that torch removes
        its build lock (a killed build would leave it, and every later import would wait on it)."""
        if cls.proc is not None and cls.proc.poll() is None:
            os.killpg(cls.proc.pid, signal.SIGINT)

    @classmethod
    def wait(cls, seconds: float) -> None:
        if cls.proc is None:
            return
        t0 = time.monotonic()
        try:
            rc = cls.proc.wait(timeout=max(seconds, 0.0) if math.isfinite(seconds) else None)
        except subprocess.TimeoutExpired:
            raise Skip(f"its JIT build did not finish within the time budget (log: {cls.log.name})")
        if rc != 0:
            raise Skip(f"its JIT build failed with rc {rc} (log: {cls.log.name})")
        if time.monotonic() - t0 > 1:
            print(f"# accelerated_scan.warp: waited {time.monotonic() - t0:.0f} s for its JIT build")


DEADLINE = [float("inf")]  # time.monotonic() at which the run's budget is spent


def accelerated_scan_setup(kind: str):
    def setup(cell: Cell, device: str):
        p = cell.params
        if not device.startswith("cuda"):
            raise Skip("CUDA only")
        if importlib.util.find_spec("accelerated_scan") is None:
            raise Skip("accelerated_scan not installed")
        if p["layout"] != "channel-major":
            raise Skip("(B, D, L) only")
        if cell.dtype not in ("float32", "bfloat16"):
            raise Skip("real dtypes only")
        if p["a_mode"] != "full":
            raise Skip("no broadcast a")
        if kind == "warp":
            WarpBuild.wait(DEADLINE[0] - time.monotonic() - 5)
        try:
            mod = __import__(f"accelerated_scan.{kind}", fromlist=["scan"])
        except ImportError as e:
            raise Skip(f"import failed: {e}")
        L = p["L"]
        if kind == "warp" and (L & (L - 1) or not 32 <= L <= 65536):
            raise Skip("power-of-two L in [32, 65536] only")
        if kind == "warp" and cell.dtype == "bfloat16":
            # Its bf16 kernels hit an illegal memory access on the H200 (kernels.md §2.4; seen again
            # here at (8, 1536, 4096)), which would poison the CUDA context for every later cell.
            raise Skip("bf16 crashes (illegal memory access) on the H200")
        a, b, g = make_inputs(cell, device)
        gates, tokens, grad = (t.transpose(1, 2) for t in (a, b, g))  # contiguous (B, D, L)
        if cell.mode == "fwd":
            h = mod.scan(gates, tokens)
            return with_note(lambda: mod.scan(gates, tokens), _check_against_lrnn(h.transpose(1, 2), a, b, cell))
        return _fwd_bwd(mod.scan, (gates, tokens), grad)
    return setup


def fla_setup(kind: str):
    def setup(cell: Cell, device: str):
        p = cell.params
        if not device.startswith("cuda"):
            raise Skip("CUDA only")
        try:
            from fla.ops import hgrn
        except ImportError:
            raise Skip("fla not installed")
        if p["layout"] != "time-major":
            raise Skip("(B, L, D) only")
        if cell.dtype not in ("float32", "bfloat16"):
            raise Skip("real dtypes only")
        if p["a_mode"] != "full":
            raise Skip("no broadcast a")
        fn = getattr(hgrn, f"{kind}_hgrn")
        a, b, g = make_inputs(cell, device)
        x, log_a, grad = b.contiguous(), a.float().log().to(a.dtype).contiguous(), g.contiguous()
        scan = lambda x, log_a: fn(x, log_a)[0]  # noqa: E731
        if cell.mode == "fwd":
            h = scan(x, log_a)
            return with_note(lambda: scan(x, log_a), _check_against_lrnn(h, a, b, cell))
        return _fwd_bwd(scan, (x, log_a), grad)
    return setup


def cuda_cells(quick: bool) -> list[Cell]:
    """Every row of the issue's table: both shapes, float32 / bfloat16 / complex64, a full or (D,),
    both layouts, fwd and fwd+bwd (--quick: the first shape only)."""
    shapes = [(8, 1536, 4096)] if quick else [(8, 1536, 4096), (2, 1536, 65536)]  # (B, D, L)
    return [make_cell(B, L, D, dtype, layout, a_mode, mode)
            for B, D, L in shapes
            for a_mode in ("full", "time-invariant")
            for dtype in ("float32", "bfloat16", "complex64")
            for layout in ("channel-major", "time-major")
            for mode in ("fwd", "fwd+bwd")]


def cpu_cells() -> list[Cell]:
    return [make_cell(8, L, 256, "float32", layout, "full", mode)
            for L in (4096, 256) for layout in ("time-major", "channel-major") for mode in ("fwd", "fwd+bwd")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    ap.add_argument("--quick", action="store_true", help="fewer cells")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile provider")
    ap.add_argument("--no-loop", action="store_true",
                    help="skip the Python-loop reference (seconds per fwd+bwd call on the GPU cells)")
    ap.add_argument("--loop-fwd-only", action="store_true", help="the Python-loop reference on forward cells only")
    ap.add_argument("--cells", default="", help="only the cells whose 'name dtype variant mode' matches this regex")
    ap.add_argument("--providers", default="", help="only the providers whose name matches this regex")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds: cells still to run after this are marked skipped (default: 185 on CUDA, "
                         "so that a whole run stays within 200 s; none on the CPU); 0: no limit")
    args = ap.parse_args()
    t_start = time.monotonic()
    cuda = args.device.startswith("cuda")
    if args.budget is None and cuda:
        args.budget = 185.0
    if args.budget == 0:
        args.budget = None
    if args.budget is not None:
        DEADLINE[0] = t_start + args.budget
    # one compile per cell costs tens of seconds: the float32 channel-major forward only
    compile_cells = set() if args.no_compile else {("float32", "channel-major", "full", "fwd")}
    providers = [Provider(f"lrnn ({'CUDA' if cuda else 'CPU'})", lrnn_setup)]
    if not args.no_loop:
        providers.append(Provider("PyTorch loop (reference)",
                                  lambda cell, device: loop_setup(cell, device, args.loop_fwd_only)))
    providers.append(Provider("torch.compile associative_scan", compiled_setup(compile_cells)))
    if cuda:  # accelerated_scan.warp last: its JIT build runs in the background meanwhile
        providers += [Provider("accelerated_scan.scalar", accelerated_scan_setup("scalar")),
                      Provider("fla chunk_hgrn", fla_setup("chunk")),
                      Provider("fla fused_recurrent_hgrn", fla_setup("fused_recurrent")),
                      Provider("accelerated_scan.warp", accelerated_scan_setup("warp"))]
    providers = [p for p in providers if re.search(args.providers, p.name)]
    cells = [c for c in (cuda_cells(args.quick) if cuda else cpu_cells())
             if re.search(args.cells, f"{c.name} {c.dtype} {c.variant} {c.mode}")]
    if cuda and any(p.name == "accelerated_scan.warp" for p in providers):
        WarpBuild.start(args.out)
    name = "linear_scan_cuda" if cuda else "linear_scan_cpu"
    results = harness.run(f"lrnn::linear_scan on {'CUDA' if cuda else 'CPU'}", cells, providers, args.device,
                          args.out, name, budget_s=args.budget)
    # speed-up of the op over the Python loop, per cell (the foundation's CPU target is >= 50x)
    by_cell = {}
    for r in results:
        by_cell.setdefault((r.cell.name, r.cell.dtype, r.cell.variant, r.cell.mode), {})[r.provider] = r.ms
    for key, t in by_cell.items():
        ours, loop = t.get(providers[0].name), t.get("PyTorch loop (reference)")
        if ours and loop:
            print(f"speed-up over the Python loop, {' '.join(key)}: {loop / ours:.0f}x")
    print(f"wrote {args.out / name}.md / .json / .png")


if __name__ == "__main__":
    main()
