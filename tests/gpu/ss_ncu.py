"""ss_ncu.py: one selective-scan call at the short benchmark shape (8, 1536, 2048, 16), for an
ncu profile of its kernels (tests/gpu/ss.sh), and the compact summary of such profiles.
    ss_ncu.py fwd|bwd float32|bfloat16     run the call (inputs as benchmarks/bench_selective_scan.py:
                                           variable B/C, softplus, delta_bias, D, no z)
    ss_ncu.py summary ncu_output.txt...    two lines per profiled kernel"""
import re
import sys


def summary(paths):
    keys = {"Duration": "dur", "Registers Per Thread": "regs", "Achieved Occupancy": "occ%",
            "Issue Slots Busy": "issue%", "Executed Instructions": "inst", "L1/TEX Cache Throughput": "L1%",
            "DRAM Throughput": "dram%", "Local Memory Spilling Requests": "spillreq"}
    for path in paths:
        kern, vals = None, {}

        def flush():
            if kern is None:
                return
            print(f"{path.split('/')[-1][4:-4]} {kern}: " + " ".join(f"{k}={v}" for k, v in vals.items() if not k.startswith("st_")))
            st = sorted(((float(v), k[3:]) for k, v in vals.items() if k.startswith("st_")), reverse=True)[:7]
            print("   stalls/issue: " + " ".join(f"{k}={v:.2f}" for v, k in st))
        for line in open(path, errors="replace"):
            if "selective_scan_" in line and "Context" in line:
                flush()
                name = re.search(r"selective_scan_(\w+)", line).group(1).replace("_kernel", "")
                grid = re.search(r"\((\d+), 1, 1\)x\((\d+), 1, 1\)", line)
                kern, vals = f"{name} g{grid.group(1)}x{grid.group(2)}" if grid else name, {}
                continue
            parts = line.split()
            for name, key in keys.items():
                if line.strip().startswith(name) and parts:
                    vals[key] = parts[-1] + ("ms" if key == "dur" and "ms" in parts else ("us" if key == "dur" else ""))
            m = re.search(r"(\S+) is the highest-utilized pipeline \(([\d.]+)%\)", line)
            if m:
                vals["pipe"] = f"{m.group(1)}:{m.group(2)}%"
            m = re.match(r"\s+smsp__average_warps_issue_stalled_(\w+)_per_issue_active.ratio\s.*?([\d.]+)\s*$", line)
            if m:
                vals["st_" + m.group(1)] = m.group(2)
            m = re.match(r"\s+(l1tex__data_pipe_lsu_wavefronts_mem_shared_op_(ld|st)|smsp__sass_inst_executed_op_shared_(ld|st)"
                         r"|l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_(ld|st))\.sum\s.*?([\d,.]+)\s*$", line)
            if m:
                short = {"l1tex__data_pipe_lsu_wavefronts_mem_shared_op_": "wf_", "smsp__sass_inst_executed_op_shared_": "ins_",
                         "l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_": "bc_"}
                name = m.group(1)
                for a, b in short.items():
                    name = name.replace(a, b)
                vals["sh" + name] = m.group(5)
        flush()


if sys.argv[1] == "summary":
    summary(sys.argv[2:])
    sys.exit(0)

import torch  # noqa: E402

import lrnn  # noqa: E402,F401

sys.path.insert(0, "benchmarks")
from bench_selective_scan import inputs  # noqa: E402

which, dtype = sys.argv[1], getattr(torch, sys.argv[2])
u, delta, A, B, C, Dv, bias = inputs((8, 1536, 2048, 16), dtype, "cuda", requires_grad=False)
y, h_last, cs = torch.ops.lrnn.selective_scan(u, delta, A, B, C, Dv, None, bias, True, None, None)
if which == "bwd":
    gy = torch.randn_like(y)
    torch.ops.lrnn.selective_scan_backward(gy, None, u, delta, A, B, C, Dv, None, bias, True, None, None, cs)
torch.cuda.synchronize()
print("ok", which, sys.argv[2])
