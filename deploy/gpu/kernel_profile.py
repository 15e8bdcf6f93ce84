#!/usr/bin/env python3
"""Per-step kernel table of a Kineto Chrome trace written by
`trainer_throughput --profile trace.json` (issue 13: profile first).

    python3 deploy/gpu/kernel_profile.py trace.json [--top 30]

Steps are the trace's lft::compute_gradients ranges (user annotations of
FlowTrainingEngine). The window runs from the first step's start to the end
of the last kernel; it prints wall per step, GPU busy per step (union of
kernel intervals), host time in compute/apply per step, time by kernel
family and the top kernels.
"""
import json
import re
import sys
from collections import defaultdict

FAMILIES = [
    ("gemm", r"gemm|cutlass|nvjet|xmma|sm90_|sm80_|cublas"),
    ("attention", r"flash|fmha|attention|softmax"),
    ("layer_norm", r"layer_norm|LayerNorm"),
    ("reduce", r"reduce|Reduce|norm_kernel"),
    ("copy/cast", r"copy|Copy|(?<!no)cast|cat_|CatArray|direct_copy"),
    ("elementwise", r"elementwise|vectorized|unrolled|Elementwise"),
]


def family(name):
    for fam, pat in FAMILIES:
        if re.search(pat, name):
            return fam
    return "other"


def short_name(name):
    """The first 70 characters of a kernel's name plus the functors and
    kernels its template arguments name: PyTorch's elementwise kernels all
    start with the same 100 characters, and the functor is what tells a
    multiply from a copy."""
    parts = []
    for m in re.finditer(r"\w*(?:Functor\w*|_kernel\w*|Kernel\w*|Impl)\b", name):
        if m.group(0) not in parts:
            parts.append(m.group(0))
    tail = " ".join(parts[:6])
    return f"{name[:70]} [{tail}]" if tail else name[:110]


def main():
    path = sys.argv[1]
    top = int(sys.argv[sys.argv.index("--top") + 1]) if "--top" in sys.argv else 30
    trace = json.load(open(path))
    ev = trace["traceEvents"] if isinstance(trace, dict) else trace
    kernels = [e for e in ev if e.get("cat") == "kernel" and "dur" in e]
    ann = defaultdict(list)
    for e in ev:
        if e.get("cat") == "user_annotation" and "dur" in e:
            ann[e["name"]].append(e)
    steps = sorted(ann.get("lft::compute_gradients", []), key=lambda e: e["ts"])
    if not steps or not kernels:
        print("no steps or no kernels in", path)
        return 1
    # The first steps pay one-time costs (allocator growth, the CUDA graph
    # recorded on the second): start at the fourth when there are enough.
    first = steps[3] if len(steps) > 5 else steps[0]
    nsteps = len(steps) - steps.index(first)
    t0 = first["ts"]
    ks = [k for k in kernels if k["ts"] >= t0]
    t1 = max(k["ts"] + k["dur"] for k in ks)
    wall = (t1 - t0) / nsteps
    busy, cur_s, cur_e = 0.0, None, None
    for k in sorted(ks, key=lambda k: k["ts"]):
        s, e = k["ts"], k["ts"] + k["dur"]
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                busy += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    busy += cur_e - cur_s
    busy /= nsteps
    host = {n: sum(e["dur"] for e in v if e["ts"] >= t0) / nsteps for n, v in ann.items()}
    print(f"\nsteps {nsteps}, wall per step {wall/1e3:.2f} ms, GPU busy {busy/1e3:.2f} ms "
          f"({busy/wall:.0%}), kernels per step {len(ks)/nsteps:.0f}")
    for n, v in sorted(host.items()):
        print(f"host {n}: {v/1e3:.2f} ms per step")
    by_fam = defaultdict(float)
    by_name = defaultdict(lambda: [0.0, 0])
    for k in ks:
        by_fam[family(k["name"])] += k["dur"]
        by_name[k["name"]][0] += k["dur"]
        by_name[k["name"]][1] += 1
    total = sum(by_fam.values())
    print("\n| family | ms per step | share of kernel time |\n|---|---|---|")
    for fam, d in sorted(by_fam.items(), key=lambda x: -x[1]):
        print(f"| {fam} | {d/nsteps/1e3:.2f} | {d/total:.1%} |")
    print("\n| kernel | ms per step | calls per step | us per call |\n|---|---|---|---|")
    for name, (d, n) in sorted(by_name.items(), key=lambda x: -x[1][0])[:top]:
        print(f"| {short_name(name)} | {d/nsteps/1e3:.3f} | {n/nsteps:.1f} | {d/n:.1f} |")
    if "--by-op" in sys.argv:
        by_op(ev, ks, nsteps, top)
    return 0


def by_op(ev, ks, nsteps, top):
    """Kernel time by the ATen op that launched it and the autograd function
    (backward node) it ran in. Needs an eager trace (LFT_TRAINER_CUDA_GRAPH=0):
    a replayed CUDA graph has no launching op."""
    import bisect
    ops = {}
    nodes = defaultdict(list)
    for e in ev:
        if e.get("cat") != "cpu_op" or "dur" not in e:
            continue
        ext = e.get("args", {}).get("External id")
        if ext is not None:
            ops[ext] = e
        if e["name"].startswith("autograd::engine::evaluate_function"):
            nodes[e["tid"]].append(e)
    starts = {}
    for tid in nodes:
        nodes[tid].sort(key=lambda e: e["ts"])
        starts[tid] = [e["ts"] for e in nodes[tid]]

    def node_of(op):
        lst, st = nodes.get(op["tid"], []), starts.get(op["tid"], [])
        i = bisect.bisect_right(st, op["ts"]) - 1
        while i >= 0:
            n = lst[i]
            if n["ts"] + n["dur"] >= op["ts"]:
                return n["name"].split(": ", 1)[-1]
            i -= 1
        return "forward"

    acc = defaultdict(lambda: [0.0, 0])
    for k in ks:
        op = ops.get(k.get("args", {}).get("External id"))
        key = (node_of(op) if op else "?", op["name"] if op else "?",
               short_name(k["name"]))
        acc[key][0] += k["dur"]
        acc[key][1] += 1
    print("\n| autograd node | op | kernel | ms per step | calls per step |\n|---|---|---|---|---|")
    for (node, op, kname), (d, n) in sorted(acc.items(), key=lambda x: -x[1][0])[:top]:
        print(f"| {node} | {op} | {kname} | {d/nsteps/1e3:.3f} | {n/nsteps:.1f} |")


if __name__ == "__main__":
    sys.exit(main())
