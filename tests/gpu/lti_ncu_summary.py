"""lti_ncu_summary.py: one line per kernel from an Nsight Compute text report (tests/gpu/lti.sh):
duration, clock, issue-slot use, executed instructions, registers, occupancy, eligible warps,
spills and the first stall hint, for the GPU round trips of the lti kernels."""
import re, sys
rows, cur = [], None
keys = {"Duration": "us", "SM Frequency": "GHz", "Issue Slots Busy": "issue%", "Registers Per Thread": "regs",
        "Achieved Occupancy": "occ%", "Eligible Warps Per Scheduler": "elig", "Local Memory Spilling Requests": "spill",
        "Waves Per SM": "waves", "Executed Instructions": "inst"}
for line in open(sys.argv[1], errors="replace"):
    m = re.match(r"^  \S.*?(\w+_kernel)(<\w+>)?\(.*\((\d+), \d+, \d+\)x\((\d+)", line)
    if m:
        cur = {"name": m.group(1) + (m.group(2) or ""), "grid": f"{m.group(3)}x{m.group(4)}", "stall": ""}
        rows.append(cur)
        continue
    if cur is None:
        continue
    for k, short in keys.items():
        if line.strip().startswith(k):
            cur[short] = line.split()[-1]
    m = re.search(r"spends ([\d.]+) cycles being stalled (.*)", line)
    if m and not cur["stall"]:
        cur["stall"] = f"stall {m.group(1)} cyc {m.group(2)[:48]}"
for r in rows:
    print("ncu " + " ".join(f"{k}={v}" for k, v in r.items() if k != "stall") + (f" | {r['stall']}" if r["stall"] else ""))
