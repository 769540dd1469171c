"""plot.py: draws the C-level linear-scan table (benchmarks/cuda/run.sh output) as % of the memory floor.

    python benchmarks/cuda/plot.py benchmarks/results/linear_scan_c_cuda.txt [out.png]
"""
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def rows(path: Path) -> list[tuple[str, str, float]]:
    """(case, pass, % of floor) for every fwd and fwd+bwd row; a later row of a case wins."""
    found = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if line.startswith("#") or len(parts) < 8 or parts[4] not in ("fwd", "fwd+bwd"):
            continue
        shape, dtype, layout, a = parts[:4]
        case = f"{shape} {dtype} {'(B,D,L)' if layout == 'cm' else '(B,L,D)'}{' a(D,)' if a == 'inv' else ''}"
        found[(case, parts[4])] = float(parts[7].rstrip("%"))
    return [(c, m, v) for (c, m), v in found.items()]


def main() -> None:
    src = Path(sys.argv[1])
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else src.with_suffix(".png")
    data = rows(src)
    cases = list(dict.fromkeys(c for c, _, _ in data))
    fig, ax = plt.subplots(figsize=(10, 0.28 * len(cases) + 1.2))
    for k, (mode, color) in enumerate((("fwd", "tab:blue"), ("fwd+bwd", "tab:orange"))):
        vals = {c: v for c, m, v in data if m == mode}
        ax.barh([i + 0.4 * k for i in range(len(cases))], [vals.get(c, 0) for c in cases], height=0.4,
                color=color, label=mode)
    ax.set_yticks([i + 0.2 for i in range(len(cases))], cases, fontsize=7)
    ax.invert_yaxis()
    ax.axvline(90, color="gray", linestyle="--", linewidth=0.8)
    ax.set_xlabel("% of the memory floor (minimal bytes / measured copy bandwidth)")
    ax.set_title("lrnn::linear_scan CUDA kernels on the H200")
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
