"""lti_ncu_summary.py: a few lines per kernel from an Nsight Compute text report (tests/gpu/lti5.sh):
duration, clock, issue-slot use, executed instructions, registers, occupancy, eligible warps,
spills, tensor- and FMA-pipe use (when measured), the busiest pipe and the largest stall reasons,
for the GPU round trips of the lti kernels."""
import re
import sys

rows, cur = [], None
keys = {"Duration": "us", "SM Frequency": "GHz", "Issue Slots Busy": "issue%", "Registers Per Thread": "regs",
        "Achieved Occupancy": "occ%", "Eligible Warps Per Scheduler": "elig", "Local Memory Spilling Requests": "spill",
        "Waves Per SM": "waves", "Executed Instructions": "inst", "Theoretical Occupancy": "theo_occ%",
        "Block Limit Shared Mem": "lim_smem", "Block Limit Registers": "lim_regs", "No Eligible": "no_elig%",
        "sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_elapsed": "tensor%",
        "sm__pipe_fma_cycles_active.avg.pct_of_peak_sustained_elapsed": "fma%"}
for line in open(sys.argv[1], errors="replace"):
    m = re.match(r"^  \S.*?(\w+_kernel)(<[^>(]*>)?\(.*\((\d+), \d+, \d+\)x\((\d+)", line)
    if m:
        cur = {"name": m.group(1) + (m.group(2) or "").replace(" ", ""), "grid": f"{m.group(3)}x{m.group(4)}", "pipe": "", "stalls": {}}
        rows.append(cur)
        continue
    if cur is None:
        continue
    for k, short in keys.items():
        if line.strip().startswith(k):
            cur[short] = line.split()[-1]
    m = re.search(r"(\w+) is the highest-utilized pipeline \(([\d.]+)%\)", line)
    if m:
        cur["pipe"] = f"{m.group(1)} {m.group(2)}%"
    # stall reasons, from --print-details all (warp state table) or per-reason metrics
    m = re.match(r"^\s*(?:Stall )?([A-Z][A-Za-z ]+?|smsp__\w*stalled_(\w+?)_per\w*\.ratio)\s+(?:cycle|ratio|inst)?\s*([\d.]+)\s*$",
                 line)
    if m and ("stall" in line.lower()):
        name = m.group(2) or m.group(1)
        try:
            cur["stalls"][name.strip()] = float(m.group(3))
        except ValueError:
            pass
for r in rows:
    top = sorted(r["stalls"].items(), key=lambda kv: -kv[1])[:5]
    extra = (f" | pipe {r['pipe']}" if r["pipe"] else "") + \
        (" | stalls " + ", ".join(f"{k} {v:.2f}" for k, v in top) if top else "")
    print("ncu " + " ".join(f"{k}={v}" for k, v in r.items() if k not in ("pipe", "stalls")) + extra)
