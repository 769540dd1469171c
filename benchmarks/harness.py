"""benchmarks/harness.py: the benchmark harness every lrnn kernel reuses.

A benchmark is a list of cells (one problem: shape, dtype, layout/variant, mode "fwd" or
"fwd+bwd", and the minimal bytes that problem must move) and a list of providers (lrnn and the
anchors it is compared with). For every (cell, provider) the harness times the provider's
callable, reports time, GB/s, the fraction of the memory floor and the peak extra memory, and
writes a markdown table, a JSON file and a PNG plot into the results folder.

- Timing: on CUDA the median of CUDA-event timings after warm-up, `triton.testing.do_bench`
  (which also flushes L2 between repetitions) when Triton is importable, else
  `torch.utils.benchmark.Timer`; on the CPU `torch.utils.benchmark.Timer` (blocked_autorange).
  Inputs are prepared outside the timed callable. LRNN_BENCH_REP_MS (default 100) sets
  do_bench's timed window, for runs with a time budget.
- Floor: bytes / copy bandwidth, where the copy bandwidth is measured in the same run with a
  large device-to-device (or host memory) copy, counted as bytes read + bytes written.
- Peak extra memory: the CUDA allocator's peak during one call minus what was allocated before
  (outputs included); not measured on the CPU.

Not here: what the providers compute or how many bytes a problem moves — the benchmark scripts
(e.g. bench_linear_scan.py) say that.
"""
from __future__ import annotations

import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch


@dataclass
class Cell:
    """One problem. `bytes` is the minimum a kernel must move (reads + writes)."""
    name: str                 # e.g. "(8, 1536, 4096)"
    dtype: str
    variant: str              # e.g. "channel-major", "time-major, a (D,)"
    mode: str                 # "fwd" or "fwd+bwd"
    bytes: int
    params: dict = field(default_factory=dict)


class Skip(Exception):
    """Raised by a provider's setup when it does not run a cell; the message says why."""


@dataclass
class Provider:
    """`setup(cell, device)` prepares inputs and returns the callable to time (or raises Skip)."""
    name: str
    setup: Callable[[Cell, str], Callable[[], object]]


@dataclass
class Result:
    cell: Cell
    provider: str
    ms: Optional[float] = None
    gbps: Optional[float] = None
    floor_fraction: Optional[float] = None
    peak_extra_mb: Optional[float] = None
    note: str = ""


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _do_bench():
    try:
        from triton.testing import do_bench
        return do_bench
    except ImportError:
        return None


def timer_name(device: str) -> str:
    if device.startswith("cuda") and _do_bench() is not None:
        return "triton.testing.do_bench (median, L2 flushed)"
    return "torch.utils.benchmark.Timer (median of blocked_autorange)"


def time_ms(fn: Callable[[], object], device: str, min_run_s: float = 0.3) -> float:
    """Median time of fn() in milliseconds, after warm-up."""
    do_bench = _do_bench() if device.startswith("cuda") else None
    if do_bench is not None:
        # LRNN_BENCH_REP_MS shortens the timed window (default 100 ms) where a run has a time budget
        rep = float(os.environ.get("LRNN_BENCH_REP_MS", "100"))
        return float(do_bench(fn, warmup=min(25.0, rep / 4), rep=rep, return_mode="median"))
    from torch.utils.benchmark import Timer
    fn()  # warm-up (lazy init, compilation, allocator)
    _sync(device)
    m = Timer(stmt="fn()", globals={"fn": fn}).blocked_autorange(min_run_time=min_run_s)
    return m.median * 1e3


def copy_bandwidth(device: str, nbytes: int = 1 << 30) -> float:
    """Bytes per second of a large copy, counting the bytes read and the bytes written."""
    if not device.startswith("cuda"):
        nbytes = min(nbytes, 256 << 20)
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    ms = time_ms(lambda: dst.copy_(src), device)
    del src, dst
    return 2 * nbytes / (ms * 1e-3)


def peak_extra_mb(fn: Callable[[], object], device: str) -> Optional[float]:
    if not device.startswith("cuda"):
        return None
    _sync(device)
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    out = fn()
    _sync(device)
    peak = torch.cuda.max_memory_allocated() - before
    del out
    return peak / 2**20


def machine_line(device: str) -> str:
    parts = [f"torch {torch.__version__}"]
    if device.startswith("cuda"):
        p = torch.cuda.get_device_properties(torch.device(device))
        parts.insert(0, f"{p.name} ({p.multi_processor_count} SMs)")
        parts.append(f"CUDA {torch.version.cuda}")
        try:
            import triton
            parts.append(f"triton {triton.__version__}")
        except ImportError:
            pass
    else:
        parts.insert(0, f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    return ", ".join(parts)


def run(title: str, cells: list[Cell], providers: list[Provider], device: str, out_dir: Path,
        basename: str, log: Callable[[str], None] = print, budget_s: Optional[float] = None) -> list[Result]:
    """Times every provider on every cell; writes <basename>.md/.json/.png into out_dir. With
    budget_s, the cells still to run once that many seconds have passed are marked skipped (the
    table, JSON and plot are complete either way)."""
    start = time.monotonic()
    out_dir.mkdir(parents=True, exist_ok=True)
    bw = copy_bandwidth(device)
    meta = {"title": title, "machine": machine_line(device), "copy_bandwidth_gbps": bw / 1e9,
            "timer": timer_name(device), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    log(f"{title}: {meta['machine']}; copy bandwidth {bw / 1e9:.0f} GB/s; timer {meta['timer']}")
    results = []
    # provider by provider (lrnn first), so that a slow anchor (JIT build, autotuning) cut off by
    # a time limit costs its own rows only; the table is ordered by cell
    order = {(id(c), p.name): (i, j) for i, c in enumerate(cells) for j, p in enumerate(providers)}
    try:  # an interrupted run (SIGINT, e.g. `timeout -s INT`) still gets its plot
        for prov in providers:
            t_prov = time.monotonic()
            for cell in cells:
                r = Result(cell, prov.name)
                try:
                    if budget_s is not None and time.monotonic() - start > budget_s:
                        raise Skip(f"time budget of the run ({budget_s:.0f} s) spent")
                    fn = prov.setup(cell, device)
                    note = getattr(fn, "note", "")
                    r.ms = time_ms(fn, device)
                    r.gbps = cell.bytes / (r.ms * 1e-3) / 1e9
                    r.floor_fraction = (cell.bytes / bw) / (r.ms * 1e-3)
                    r.peak_extra_mb = peak_extra_mb(fn, device)
                    r.note = note
                    del fn
                except Skip as s:
                    r.note = f"skipped: {s}"
                except Exception as e:  # an anchor failing on a cell is a result, not a crash
                    r.note = f"error: {type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}"
                if device.startswith("cuda"):
                    torch.cuda.empty_cache()
                results.append(r)
                results.sort(key=lambda x: order[(id(x.cell), x.provider)])
                log(format_row(r))
                # written after every cell, so an interrupted run still leaves its table
                (out_dir / f"{basename}.md").write_text(markdown(results, meta))
                (out_dir / f"{basename}.json").write_text(json.dumps(
                    {"meta": meta, "results": [dict(asdict(x), cell=asdict(x.cell)) for x in results]}, indent=1))
            log(f"# {prov.name}: {time.monotonic() - t_prov:.1f} s (run total {time.monotonic() - start:.1f} s)")
    finally:
        plot_note = plot(results, meta, out_dir / f"{basename}.png")
        if plot_note:
            log(plot_note)
    return results


def _fmt(v: Optional[float], spec: str) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def format_row(r: Result) -> str:
    c = r.cell
    return (f"{c.name:>20} {c.dtype:>9} {c.variant:>24} {c.mode:>8} {r.provider:>28} "
            f"{_fmt(r.ms, '10.4f')} ms {_fmt(r.gbps, '8.0f')} GB/s "
            f"{_fmt(None if r.floor_fraction is None else 100 * r.floor_fraction, '6.1f')} % floor  {r.note}")


def markdown(results: list[Result], meta: dict) -> str:
    lines = [f"## {meta['title']}", "",
             f"{meta['machine']}. Copy bandwidth measured in this run: {meta['copy_bandwidth_gbps']:.0f} GB/s "
             f"(read + write). Timer: {meta['timer']}. {meta['date']}.", "",
             "Floor = minimal bytes / copy bandwidth; `% floor` = floor / time.", "",
             "| shape | dtype | layout / variant | mode | provider | time (ms) | GB/s | % floor | peak extra MiB | note |",
             "|---|---|---|---|---|---:|---:|---:|---:|---|"]
    for r in results:
        c = r.cell
        pct = None if r.floor_fraction is None else 100 * r.floor_fraction
        lines.append(f"| {c.name} | {c.dtype} | {c.variant} | {c.mode} | {r.provider} | {_fmt(r.ms, '.4f')} | "
                     f"{_fmt(r.gbps, '.0f')} | {_fmt(pct, '.1f')} | {_fmt(r.peak_extra_mb, '.0f')} | {r.note} |")
    return "\n".join(lines) + "\n"


def plot(results: list[Result], meta: dict, path: Path) -> str:
    """Grouped bars: % of floor per cell and provider. Returns a note when no plot was made."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no plot written"
    cells, providers = [], []
    for r in results:
        key = (r.cell.name, r.cell.dtype, r.cell.variant, r.cell.mode)
        if key not in cells:
            cells.append(key)
        if r.provider not in providers:
            providers.append(r.provider)
    value = {((r.cell.name, r.cell.dtype, r.cell.variant, r.cell.mode), r.provider): r.floor_fraction
             for r in results}
    width = 0.8 / max(len(providers), 1)
    fig, ax = plt.subplots(figsize=(min(24.0, max(8.0, 0.45 * len(cells))), 6.0))
    for i, prov in enumerate(providers):
        xs = [j + (i - (len(providers) - 1) / 2) * width for j in range(len(cells))]
        ys = [100 * (value.get((c, prov)) or 0.0) for c in cells]
        ax.bar(xs, ys, width, label=prov)
    ax.axhline(100, color="black", linewidth=0.8, linestyle="--")
    ax.set_xticks(range(len(cells)))
    ax.set_xticklabels([f"{n}\n{d} {v}\n{m}" for n, d, v, m in cells], fontsize=6, rotation=90)
    ax.set_ylabel("% of memory floor (bytes / measured copy bandwidth)")
    ax.set_title(f"{meta['title']}\n{meta['machine']}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return ""


def load(json_path: Path) -> tuple[list[Result], dict]:
    """The results and metadata of a run written by run()."""
    data = json.loads(Path(json_path).read_text())
    results = [Result(**dict(r, cell=Cell(**r["cell"]))) for r in data["results"]]
    return results, data["meta"]


if __name__ == "__main__":
    # Re-render a run's table and plot from its JSON (e.g. one copied back from the GPU machine,
    # or cut short by a time limit before its plot was drawn):
    #   python benchmarks/harness.py benchmarks/results/linear_scan_cuda.json
    import sys
    for arg in sys.argv[1:]:
        results, meta = load(Path(arg))
        Path(arg).with_suffix(".md").write_text(markdown(results, meta))
        print(plot(results, meta, Path(arg).with_suffix(".png")) or f"wrote {Path(arg).with_suffix('.png')}")
