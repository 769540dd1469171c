"""tests/gpu/linear_scan_sanitize.py: runs every CUDA linear-scan kernel variant once, forward and
backward, at small sizes — the workload for compute-sanitizer (memcheck, racecheck) in
tests/gpu/linear_scan.sh. Variants: channel-major with 16-byte vectors, channel-major with
scalar loads (misaligned rows), time-major, strided (generic); forward/reverse; full and
time-invariant a; lengths that leave partial tiles and rounds. --small keeps one dtype (for
racecheck, which only looks at shared memory, identical across dtypes)."""
import argparse

import torch

import lrnn  # noqa: F401

ap = argparse.ArgumentParser()
ap.add_argument("--small", action="store_true")
args = ap.parse_args()

dtypes = [(torch.float32, torch.float32)]
if not args.small:
    dtypes += [(torch.bfloat16, torch.bfloat16), (torch.complex64, torch.float32), (torch.complex128, torch.complex128)]
layouts = ["time-major", "channel-major"] + ([] if args.small else ["channel-major-offset", "strided"])


def seq(B, L, D, dtype, layout):
    if layout == "time-major":
        t = torch.randn(B, L, D, dtype=dtype, device="cuda")
    elif layout == "channel-major":
        t = torch.randn(B, D, L, dtype=dtype, device="cuda").transpose(1, 2)
    elif layout == "channel-major-offset":
        t = torch.randn(B, D, L + 1, dtype=dtype, device="cuda")[:, :, 1:].transpose(1, 2)
    else:
        t = torch.randn(B, L, 2 * D, dtype=dtype, device="cuda")[:, :, ::2]
    return t


n = 0
for dt, adt in dtypes:
    for layout in layouts:
        for L in (37, 5000):
            for reverse in (False, True):
                for a_mode in ("full", "time-invariant"):
                    B, D = 2, 9
                    a = (seq(B, L, D, adt, layout) if a_mode == "full" else torch.randn(D, dtype=adt, device="cuda"))
                    a = a / (a.abs() + 1)  # |a| < 1
                    b = seq(B, L, D, dt, layout)
                    h0 = torch.randn(B, D, dtype=dt, device="cuda")
                    h, h_last = torch.ops.lrnn.linear_scan(a, b, h0, reverse)
                    g = seq(B, L, D, dt, layout)
                    torch.ops.lrnn.linear_scan_backward(g, h_last, a, h, h0, reverse)
                    n += 2
torch.cuda.synchronize()
print(f"ran {n} linear-scan kernel launches")
