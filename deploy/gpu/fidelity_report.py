"""Composition of the fidelity study's results (issue 16): rows in the layout
of the LFT paper's Table 1, the planner's block signals, the paper's claims
decided by explicit rules, docs/fidelity.json, docs/fidelity.md and SVG plots.

Standard library only (the CPU machine has no numpy), importable without the
driver (deploy/gpu/fidelity_study.py), tested by
tests/unit/deploy/fidelity_report_test.py.

Inputs are plain dicts:
  * an evaluation report as lft's evaluator writes it (report.json,
    docs/store.md "Evaluation reports"), plus what the driver knows of the job
    (block, method, batch and sequence length); rows_from_report turns it
    into study rows. Report fields that a newer evaluator adds (row
    kl_x_softmax / kl_x_lens, row method "linear", report regression_tokens,
    report curve) are read when present and recorded as None otherwise.
  * the planner: lft-analyze JSON matrices (format lft-recoupling-matrix-1).

Every claim is decided by a rule stated in CLAIM_RULES and printed beside its
numbers; a claim whose rows are missing is "not measured" (holds = None).
"""

import json
import math

# Paper numbers the study is compared with (reference.md).
PAPER_TOKENS = 2_600_000_000
PAPER_PPL_TEACHER = 9.02

NOT_MEASURED = "not measured"

# The rules, as printed in docs/fidelity.md. {b25}, {b50}, {skip} are filled
# in with the blocks of the run (scaled in the rehearsal).
CLAIM_RULES = {
    "fw_beats_sfm_50": (
        "FW beats SFM at 50% compression",
        "on block {b50}, the FW row (midpoint, k = 3) has lower KL_PQ and "
        "lower PPL than the SFM row (midpoint, k = 3)"),
    "fw_best_near_k3": (
        "FW is best near k = 3 and degrades slowly up to k = 8",
        "on each of {b25} and {b50}: the midpoint FW row with the lowest "
        "KL_PQ has k in {{2, 3, 4}}, and KL_PQ(k = 8) <= 1.25 x KL_PQ(best)"),
    "sfm_better_as_k_falls": (
        "SFM gets slightly better as k falls",
        "on each of {b25} and {b50}: the Spearman correlation of k with "
        "KL_PQ over the midpoint SFM rows (k = 1, 2, 3, 4, 8) is >= 0.5 "
        "(KL_PQ mostly rises with k)"),
    "flow12_beats_skip3": (
        "The 12-layer flow layer beats skipping 3 layers",
        "on block {b50}, the FW row (midpoint, k = 3) has lower KL_PQ and "
        "lower PPL than skip-{skip} (layers {s0} to {s1} skipped; the paper: "
        "0.736 vs 0.932 KL_PQ, 19.92 vs 22.59 PPL)"),
    "recoupling_orders_nmse": (
        "The recoupling ratio orders blocks as the achieved NMSE does",
        "over the blocks scored, the Spearman correlation between the "
        "planner's recoupling ratio (the ranking matrix) and the NMSE of the "
        "FW row (midpoint, k = 3) is >= 0.5"),
    "fw_beats_regression": (
        "FW beats the regression baseline",
        "on each of {b25} and {b50}, the FW row (midpoint, k = 3) has lower "
        "KL_PQ and lower PPL than the regression row (the paper: 0.254 vs "
        "0.305 and 0.736 vs 0.864 KL_PQ)"),
}


# ---------------------------------------------------------------- statistics

def average_ranks(values):
    """1-based ranks; tied values share the mean of the ranks they span."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        mean_rank = (i + j) / 2.0 + 1.0
        for p in range(i, j + 1):
            ranks[order[p]] = mean_rank
        i = j + 1
    return ranks


def pearson(xs, ys):
    """Pearson correlation; None for fewer than 2 points or no variance."""
    n = len(xs)
    if n != len(ys) or n < 2:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)


def spearman(xs, ys):
    """Spearman's rho: Pearson correlation of the average ranks (correct
    with ties). None for fewer than 2 points or when either side is
    constant."""
    if len(xs) != len(ys) or len(xs) < 2:
        return None
    return pearson(average_ranks(list(xs)), average_ranks(list(ys)))


# ---------------------------------------------------------------------- rows

def _num(v):
    return None if v is None else float(v)


def rows_from_report(report, job):
    """Study rows of one evaluation report.

    job: {"id", "block": [m, n], "method", "batch_sequences",
          "sequence_length", "scored_baselines": bool}
    Teacher and skip rows are taken only when job["scored_baselines"] (one
    report per block supplies them; they are the same in every report of
    the block). Regression and linear rows come from whichever report has
    them. training_tokens: flow rows the checkpoint's tokens; regression the
    report's regression_tokens, else regression.steps x batch x sequence
    length (the evaluator's rule); linear the report's linear_tokens (None
    if absent); skip and teacher 0.
    """
    block = list(job["block"])
    per_step = int(job.get("batch_sequences", 0)) * int(
        job.get("sequence_length", 0))
    reg_tokens = report.get("regression_tokens")
    if reg_tokens is None:
        steps = (report.get("regression") or {}).get("steps", 0)
        reg_tokens = steps * per_step if steps else None
    out = []
    for r in report.get("rows", []):
        method = r.get("method")
        if method in ("teacher", "skip") and not job.get("scored_baselines"):
            continue
        row = {
            "block": block,
            "method": method,
            "label": r.get("label", method),
            "k": r.get("k") or None,
            "solver": r.get("solver") or None,
            "nfe": r.get("nfe") or None,
            "layers_removed": r.get("layers_removed"),
            "skip": r.get("skip") or None,
            "training_tokens": 0,
            "kl_x": _num(r.get("kl_x")),
            "kl_x_softmax": _num(r.get("kl_x_softmax")),
            "kl_x_lens": _num(r.get("kl_x_lens")),
            "nmse": _num(r.get("nmse")),
            "kl_pq": _num(r.get("kl_pq")),
            "ppl": _num(r.get("ppl")),
            "job": job.get("id"),
        }
        if row["solver"]:  # flow rows
            row["training_tokens"] = report.get("checkpoint_tokens")
        elif method == "regression":
            row["training_tokens"] = reg_tokens
        elif method == "linear":
            row["training_tokens"] = r.get(
                "training_tokens", report.get("linear_tokens"))
        out.append(row)
    return out


def find_row(rows, block, method, k=None, solver=None, skip=None):
    for r in rows:
        if list(r["block"]) != list(block) or r["method"] != method:
            continue
        if k is not None and r["k"] != k:
            continue
        if solver is not None and r["solver"] != solver:
            continue
        if skip is not None and r.get("skip") != skip:
            continue
        return r
    return None


def _brief(r):
    if r is None:
        return None
    return {k: r.get(k) for k in ("block", "method", "k", "solver", "nfe",
                                  "nmse", "kl_pq", "ppl")}


# ------------------------------------------------------------------- planner

def planner_blocks(matrix_256, matrix_more):
    """Per (m, n) signals from two lft-analyze JSONs (the paper's 256 tokens
    and more). recoupling is R over 256 tokens; recoupling_more R over the
    larger count; block_influence and angular from the larger run."""
    big = matrix_more or matrix_256
    L = big["num_layers"]
    out = []
    for m in range(L):
        for n in range(m + 1, L + 1):
            out.append({
                "m": m, "n": n,
                "recoupling": matrix_256["ratio"][m][n] if matrix_256 else None,
                "recoupling_more": big["ratio"][m][n],
                "block_influence": big["block_influence"][m][n],
                "angular": big["angular_distance"][m][n],
            })
    return out


def ranking_key(b):
    """The planner's ranking (lower = better candidate): R over the larger
    token count, ties broken by R over 256 tokens, then angular distance,
    then m."""
    return (b["recoupling_more"],
            b["recoupling"] if b["recoupling"] is not None else 0.0,
            b["angular"], b["m"])


def pick_best_worst(blocks, size, exclude=()):
    """The best and the worst block of `size` layers by ranking_key,
    excluding the blocks in `exclude` (lists [m, n])."""
    ex = {tuple(e) for e in exclude}
    cands = [b for b in blocks
             if b["n"] - b["m"] == size and (b["m"], b["n"]) not in ex]
    if len(cands) < 2:
        raise ValueError(f"fewer than 2 candidate blocks of size {size}")
    cands.sort(key=ranking_key)
    return [cands[0]["m"], cands[0]["n"]], [cands[-1]["m"], cands[-1]["n"]]


def planner_signal(blocks, block, key="recoupling_more"):
    for b in blocks:
        if b["m"] == block[0] and b["n"] == block[1]:
            return b[key]
    return None


# -------------------------------------------------------------------- claims

def _lt(a, b):
    return a is not None and b is not None and a < b


def _claim(cid, cfg, holds, numbers):
    text, rule = CLAIM_RULES[cid]
    fmt = {"b25": _blk(cfg["block25"]), "b50": _blk(cfg["block50"]),
           "skip": cfg["skip3"], "s0": cfg["block50"][0],
           "s1": cfg["block50"][0] + cfg["skip3"] - 1}
    return {"id": cid, "claim": text, "rule": rule.format(**fmt),
            "holds": holds, "numbers": numbers}


def _blk(b):
    return f"[{b[0]}, {b[1]})"


def decide_claims(rows, planner, cfg):
    """cfg: {"block25": [m, n], "block50": [m, n], "skip3": j,
    "scored_blocks": [[m, n], ...]}. Returns the claim objects of
    fidelity.json: claim, rule, holds (True / False / None = not measured)
    and the numbers behind it."""
    b25, b50 = cfg["block25"], cfg["block50"]
    claims = []

    # 1. FW vs SFM at 50%.
    fw = find_row(rows, b50, "fw", 3, "midpoint")
    sfm = find_row(rows, b50, "sfm", 3, "midpoint")
    holds = None
    if fw and sfm:
        holds = _lt(fw["kl_pq"], sfm["kl_pq"]) and _lt(fw["ppl"], sfm["ppl"])
    claims.append(_claim("fw_beats_sfm_50", cfg, holds, {
        "fw_k3": _brief(fw), "sfm_k3": _brief(sfm),
        "fw_k1": _brief(find_row(rows, b50, "fw", 1, "midpoint")),
        "sfm_k1": _brief(find_row(rows, b50, "sfm", 1, "midpoint"))}))

    # 2. FW best near k = 3, slow degradation to k = 8.
    per_block, verdicts = {}, []
    for b in (b25, b50):
        fws = [r for r in rows if list(r["block"]) == list(b)
               and r["method"] == "fw" and r["solver"] == "midpoint"
               and r["kl_pq"] is not None]
        k8 = find_row(rows, b, "fw", 8, "midpoint")
        if not fws or k8 is None:
            verdicts.append(None)
            per_block[_blk(b)] = None
            continue
        best = min(fws, key=lambda r: (r["kl_pq"], r["k"]))
        ok = best["k"] in (2, 3, 4) and k8["kl_pq"] <= 1.25 * best["kl_pq"]
        verdicts.append(ok)
        per_block[_blk(b)] = {
            "kl_pq_by_k": {str(r["k"]): r["kl_pq"] for r in
                           sorted(fws, key=lambda r: r["k"])},
            "best_k": best["k"], "kl_pq_best": best["kl_pq"],
            "kl_pq_k8": k8["kl_pq"],
            "k8_over_best": k8["kl_pq"] / best["kl_pq"] if best["kl_pq"] else None,
            "holds": ok}
    claims.append(_claim("fw_best_near_k3", cfg, _all(verdicts), per_block))

    # 3. SFM better as k falls.
    per_block, verdicts = {}, []
    for b in (b25, b50):
        sfms = sorted([r for r in rows if list(r["block"]) == list(b)
                       and r["method"] == "sfm" and r["solver"] == "midpoint"
                       and r["kl_pq"] is not None], key=lambda r: r["k"])
        if len(sfms) < 2:
            verdicts.append(None)
            per_block[_blk(b)] = None
            continue
        rho = spearman([r["k"] for r in sfms], [r["kl_pq"] for r in sfms])
        ok = rho is not None and rho >= 0.5
        verdicts.append(ok)
        per_block[_blk(b)] = {
            "kl_pq_by_k": {str(r["k"]): r["kl_pq"] for r in sfms},
            "spearman_k_kl_pq": rho, "holds": ok}
    claims.append(_claim("sfm_better_as_k_falls", cfg, _all(verdicts),
                         per_block))

    # 4. 12-layer flow layer vs skipping 3 layers.
    fw = find_row(rows, b50, "fw", 3, "midpoint")
    skip = find_row(rows, b50, "skip", skip=cfg["skip3"])
    holds = None
    if fw and skip:
        holds = _lt(fw["kl_pq"], skip["kl_pq"]) and _lt(fw["ppl"], skip["ppl"])
    claims.append(_claim("flow12_beats_skip3", cfg, holds, {
        "fw_k3": _brief(fw), "skip": _brief(skip),
        "skip_layers": cfg["skip3"]}))

    # 5. Recoupling ratio orders blocks as NMSE does.
    pts = []
    for b in cfg["scored_blocks"]:
        fw = find_row(rows, b, "fw", 3, "midpoint")
        r = planner_signal(planner, b)
        if fw is not None and fw["nmse"] is not None and r is not None:
            pts.append({"block": list(b), "recoupling": r, "nmse": fw["nmse"],
                        "block_influence": planner_signal(
                            planner, b, "block_influence"),
                        "angular": planner_signal(planner, b, "angular")})
    numbers = {"points": pts}
    holds = None
    if len(pts) >= 3:
        rho = spearman([p["recoupling"] for p in pts], [p["nmse"] for p in pts])
        numbers["spearman_recoupling_nmse"] = rho
        numbers["spearman_block_influence_nmse"] = spearman(
            [p["block_influence"] for p in pts], [p["nmse"] for p in pts])
        numbers["spearman_angular_nmse"] = spearman(
            [p["angular"] for p in pts], [p["nmse"] for p in pts])
        holds = rho is not None and rho >= 0.5
        if rho is None:
            numbers["note"] = ("R (or NMSE) is equal on every block scored: "
                               "it orders nothing")
        else:
            values = [p["recoupling"] for p in pts]
            common = max(set(values), key=values.count)
            tied = values.count(common)
            if tied > 1:
                numbers["note"] = (
                    f"{tied} of the {len(pts)} blocks scored share R = "
                    f"{common:.3g}: the planner cannot tell them apart, "
                    "and the correlation rests on the others")
    claims.append(_claim("recoupling_orders_nmse", cfg, holds, numbers))

    # 6. FW vs regression.
    per_block, verdicts = {}, []
    for b in (b25, b50):
        fw = find_row(rows, b, "fw", 3, "midpoint")
        reg = find_row(rows, b, "regression")
        if fw is None or reg is None:
            verdicts.append(None)
            per_block[_blk(b)] = None
            continue
        ok = _lt(fw["kl_pq"], reg["kl_pq"]) and _lt(fw["ppl"], reg["ppl"])
        verdicts.append(ok)
        per_block[_blk(b)] = {"fw_k3": _brief(fw), "regression": _brief(reg),
                              "regression_tokens": reg["training_tokens"],
                              "fw_tokens": fw["training_tokens"], "holds": ok}
    claims.append(_claim("fw_beats_regression", cfg, _all(verdicts),
                         per_block))
    return claims


def _all(verdicts):
    """True if every verdict is True; None if any is None; else False."""
    if any(v is None for v in verdicts):
        return None
    return all(verdicts)


# ---------------------------------------------------------------- fidelity.json

def compose_json(teacher, rows, planner, claims, meta):
    return {
        "format": "lft-fidelity-1",
        "meta": meta,
        "teacher": teacher,
        "rows": rows,
        "planner": planner,
        "claims": claims,
    }


# ------------------------------------------------------------------ Markdown

def _f(v, digits=4):
    if v is None:
        return "n/m"
    if isinstance(v, float):
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            return f"{v:.3e}"
        return f"{v:.{digits}f}"
    return str(v)


def _tokens(v):
    if v is None:
        return "n/m"
    if v >= 1e9:
        return f"{v / 1e9:.2f} B"
    if v >= 1e6:
        return f"{v / 1e6:.2f} M"
    if v >= 1e3:
        return f"{v / 1e3:.1f} k"
    return str(v)


def verdict_word(h):
    return {True: "holds", False: "does not hold", None: NOT_MEASURED}[h]


def budget_note(rows, block=None):
    """The sentence beside every table: tokens per method against the
    paper's 2.6 B."""
    per = {}
    for r in rows:
        if block is not None and list(r["block"]) != list(block):
            continue
        if r["method"] in ("teacher", "skip"):
            continue
        t = r.get("training_tokens")
        per.setdefault(r["method"], set()).add(t)
    parts = []
    for m in sorted(per):
        vals = sorted(v for v in per[m] if v is not None)
        if not vals:
            parts.append(f"{m} {NOT_MEASURED}")
            continue
        v = vals[-1]
        parts.append(f"{m} {_tokens(v)} ({100.0 * v / PAPER_TOKENS:.3f}% of "
                     "the paper's 2.6 B)")
    if not parts:
        return ""
    return ("*Budget far below the paper's 2.6 B distillation tokens: "
            "training tokens per method: " + "; ".join(parts) + ".*")


TABLE_HEADER = ("| method | block | layers removed | k | solver | NFE | "
                "training tokens | KL_x (softmax) | KL_x (lens) | KL_x | NMSE | "
                "KL_PQ | PPL |\n|---|---|---|---|---|---|---|---|---|---|---|"
                "---|---|\n")

_METHOD_ORDER = {"teacher": 0, "skip": 1, "regression": 2, "linear": 3,
                 "sfm": 4, "fw": 5, "hybrid": 6}


def table_rows(rows, block, solvers=("midpoint", "euler")):
    sel = [r for r in rows if list(r["block"]) == list(block)
           and (r["solver"] is None or r["solver"] in solvers)]
    sel.sort(key=lambda r: (_METHOD_ORDER.get(r["method"], 9),
                            r.get("skip") or 0, r["solver"] or "",
                            r["k"] or 0))
    s = TABLE_HEADER
    for r in sel:
        s += ("| {label} | {blk} | {lr} | {k} | {sol} | {nfe} | {tok} | {kxs} "
              "| {kxl} | {kx} | {nmse} | {klpq} | {ppl} |\n").format(
            label=r["label"], blk=_blk(r["block"]),
            lr=_f(r["layers_removed"]), k=_f(r["k"]) if r["k"] else "-",
            sol=r["solver"] or "-", nfe=_f(r["nfe"]) if r["nfe"] else "-",
            tok=_tokens(r["training_tokens"]) if r["training_tokens"] else "-",
            kxs=_f(r["kl_x_softmax"]), kxl=_f(r["kl_x_lens"]),
            kx=_f(r["kl_x"]), nmse=_f(r["nmse"]), klpq=_f(r["kl_pq"]),
            ppl=_f(r["ppl"], 3))
    return s


def claims_markdown(claims):
    s = ""
    for c in claims:
        nums = json.dumps(_rounded(c["numbers"]), sort_keys=True, default=str)
        s += (f"- **{c['claim']}**: **{verdict_word(c['holds'])}**. "
              f"Rule: {c['rule']}. Numbers: `{nums}`\n")
    return s


def _rounded(v):
    """Floats to 4 significant digits, recursively (for reading; the JSON
    keeps every digit)."""
    if isinstance(v, float):
        return float(f"{v:.4g}")
    if isinstance(v, dict):
        return {k: _rounded(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_rounded(x) for x in v]
    return v


def compose_markdown(doc, intro, extra_sections=()):
    """docs/fidelity.md from fidelity.json's content. intro: Markdown about
    how the study was run (command, scale, budgets) placed first."""
    meta = doc["meta"]
    rows, planner, claims = doc["rows"], doc["planner"], doc["claims"]
    t = doc["teacher"]
    s = "# Fidelity study (issue 16)\n\n"
    if meta.get("scale") == "rehearsal":
        s += ("> **CPU rehearsal of the study script at toy scale.** These "
              "numbers test the script, not the paper: a tiny teacher, a few "
              "thousand training tokens. The study's numbers come from the "
              "GPU run (`deploy/gpu/fidelity_study.sh`).\n\n")
    s += intro + "\n"
    s += "## Teacher\n\n"
    s += ("| layers | hidden | parameters | pretraining tokens | held-out PPL "
          "(val) | held-out PPL (evaluator's set) |\n|---|---|---|---|---|---|\n")
    s += (f"| {t.get('layers')} | {t.get('hidden')} | {_tokens(t.get('parameters'))} "
          f"| {_tokens(t.get('pretraining_tokens'))} | {_f(t.get('heldout_ppl'), 3)} "
          f"| {_f(t.get('eval_ppl'), 3)} |\n\n")
    s += "## Claims of the paper\n\n"
    s += budget_note(rows) + "\n\n" + claims_markdown(claims) + "\n"
    s += "## Planner: block signals\n\n"
    s += planner_markdown(planner, meta) + "\n"
    for b in meta.get("blocks", []):
        s += f"## Block {_blk(b['block'])} ({b['role']})\n\n"
        s += budget_note(rows, b["block"]) + "\n\n"
        s += table_rows(rows, b["block"]) + "\n"
    for title, body in extra_sections:
        s += f"## {title}\n\n{body}\n\n"
    return s


def planner_markdown(planner, meta):
    blocks = planner.get("blocks", [])
    size = planner.get("size")
    s = (f"Recoupling ratio R (exact assignment) over {planner.get('tokens')} "
         f"tokens (the paper's count) and over {planner.get('more_tokens')} "
         f"tokens, Block Influence (1 - cos) and angular distance "
         f"(arccos(cos) / pi) between h_m and h_n, on "
         f"{planner.get('heldout', 'held-out text')}. Heatmaps: "
         f"{', '.join(planner.get('heatmaps', []))}. Ranking rule: "
         f"{planner.get('rule')}\n\n")
    if size:
        cands = sorted([b for b in blocks if b["n"] - b["m"] == size],
                       key=ranking_key)
        s += (f"Blocks of {size} layers, best first (chosen: best "
              f"{_blk(planner.get('best', [0, 0]))}, worst "
              f"{_blk(planner.get('worst', [0, 0]))}):\n\n")
        s += ("| block | R (256) | R (more) | Block Influence | angular |\n"
              "|---|---|---|---|---|\n")
        for b in cands:
            s += (f"| {_blk([b['m'], b['n']])} | {_f(b['recoupling'], 3)} | "
                  f"{_f(b['recoupling_more'], 3)} | {_f(b['block_influence'])} | "
                  f"{_f(b['angular'])} |\n")
    return s


# ---------------------------------------------------------------------- SVG

_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
           "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def _esc(s):
    return (str(s).replace("&", "&amp;").replace("<", "&lt;")
            .replace(">", "&gt;"))


def svg_panels(title, panels, width=460, height=320):
    """panels: [{"title", "xlabel", "ylabel", "logx", "logy",
    "series": [{"label", "points": [(x, y)], "dashed": bool}]}] side by side.
    Non-positive values are dropped on a log axis. Returns SVG text."""
    W = width * len(panels)
    H = height + 40
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'font-family="sans-serif" font-size="11">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="18" text-anchor="middle" font-size="14">'
           f'{_esc(title)}</text>']
    for i, p in enumerate(panels):
        out.append(_svg_panel(p, i * width, 30, width, height))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _svg_panel(p, ox, oy, w, h):
    left, right, top, bottom = 60, 130, 20, 40
    pw, ph = w - left - right, h - top - bottom
    logx, logy = p.get("logx", False), p.get("logy", False)

    def ok(x, y):
        return (x is not None and y is not None and not (logx and x <= 0)
                and not (logy and y <= 0) and math.isfinite(x)
                and math.isfinite(y))
    pts = [(x, y) for s in p["series"] for x, y in s["points"] if ok(x, y)]
    g = [f'<g transform="translate({ox},{oy})">',
         f'<text x="{left + pw / 2}" y="12" text-anchor="middle">'
         f'{_esc(p.get("title", ""))}</text>']
    if not pts:
        g.append(f'<text x="{left + pw / 2}" y="{top + ph / 2}" '
                 f'text-anchor="middle">no data ({NOT_MEASURED})</text></g>')
        return "\n".join(g)
    tx = (lambda v: math.log10(v)) if logx else (lambda v: v)
    ty = (lambda v: math.log10(v)) if logy else (lambda v: v)
    xs = [tx(x) for x, _ in pts]
    ys = [ty(y) for _, y in pts]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if x1 == x0:
        x0, x1 = x0 - 0.5, x1 + 0.5
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    pad = 0.05 * (y1 - y0)
    y0, y1 = y0 - pad, y1 + pad

    def X(v):
        return left + (tx(v) - x0) / (x1 - x0) * pw

    def Y(v):
        return top + ph - (ty(v) - y0) / (y1 - y0) * ph
    g.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" '
             f'fill="none" stroke="black"/>')
    for j in range(5):
        fx = x0 + (x1 - x0) * j / 4
        fy = y0 + (y1 - y0) * j / 4
        vx = 10 ** fx if logx else fx
        vy = 10 ** fy if logy else fy
        px = left + pw * j / 4
        py = top + ph - ph * j / 4
        g.append(f'<text x="{px}" y="{top + ph + 14}" text-anchor="middle">'
                 f'{_esc(_tick(vx))}</text>')
        g.append(f'<text x="{left - 4}" y="{py + 4}" text-anchor="end">'
                 f'{_esc(_tick(vy))}</text>')
        g.append(f'<line x1="{left}" x2="{left + pw}" y1="{py}" y2="{py}" '
                 f'stroke="#ddd"/>')
    g.append(f'<text x="{left + pw / 2}" y="{top + ph + 30}" '
             f'text-anchor="middle">{_esc(p.get("xlabel", ""))}'
             f'{" (log)" if logx else ""}</text>')
    g.append(f'<text x="12" y="{top + ph / 2}" text-anchor="middle" '
             f'transform="rotate(-90 12 {top + ph / 2})">'
             f'{_esc(p.get("ylabel", ""))}{" (log)" if logy else ""}</text>')
    for i, s in enumerate(p["series"]):
        c = s.get("color", _COLORS[i % len(_COLORS)])
        sp = [(x, y) for x, y in s["points"] if ok(x, y)]
        dash = ' stroke-dasharray="5,3"' if s.get("dashed") else ""
        if len(sp) >= 2:
            d = " ".join(f"{X(x):.1f},{Y(y):.1f}" for x, y in sp)
            g.append(f'<polyline points="{d}" fill="none" stroke="{c}" '
                     f'stroke-width="1.5"{dash}/>')
        for x, y in sp:
            g.append(f'<circle cx="{X(x):.1f}" cy="{Y(y):.1f}" r="2.5" '
                     f'fill="{c}"/>')
        ly = top + 10 + 14 * i
        g.append(f'<line x1="{left + pw + 8}" x2="{left + pw + 24}" y1="{ly}" '
                 f'y2="{ly}" stroke="{c}" stroke-width="2"{dash}/>')
        g.append(f'<text x="{left + pw + 28}" y="{ly + 4}">'
                 f'{_esc(s["label"])}</text>')
    g.append("</g>")
    return "\n".join(g)


def _tick(v):
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e4 or a < 1e-2:
        return f"{v:.1e}"
    if a >= 100:
        return f"{v:.0f}"
    return f"{v:.3g}"


def kl_nmse_vs_k_svg(rows, block, title):
    """Figure 5's analogue for one block: KL_PQ and NMSE against k, one line
    per method and solver, skip-j and regression as dashed levels."""
    panels = []
    for metric, label in (("kl_pq", "KL_PQ"), ("nmse", "NMSE")):
        series = []
        for method in ("sfm", "fw", "hybrid"):
            for solver in ("midpoint", "euler"):
                pts = sorted((r["k"], r[metric]) for r in rows
                             if list(r["block"]) == list(block)
                             and r["method"] == method
                             and r["solver"] == solver
                             and r[metric] is not None)
                if pts:
                    series.append({"label": f"{method} {solver}",
                                   "points": pts,
                                   "dashed": solver == "euler"})
        ks = sorted({r["k"] for r in rows if list(r["block"]) == list(block)
                     and r["k"]})
        for r in rows:
            if (list(r["block"]) == list(block) and r[metric] is not None
                    and r["method"] in ("regression", "linear", "skip")
                    and ks):
                series.append({"label": r["label"],
                               "points": [(ks[0], r[metric]),
                                          (ks[-1], r[metric])],
                               "dashed": True, "color": "#999999"})
        panels.append({"title": f"{label} vs k", "xlabel": "k",
                       "ylabel": label, "logy": True, "series": series})
    return svg_panels(title, panels)


def nmse_vs_tokens_svg(curves, title):
    """Figure 4's analogue. curves: [{"label", "points": [(tokens, v)],
    "ylabel"}]; the y label says whether the points are NMSE (the
    evaluator's curve) or training loss (fallback)."""
    ylabel = curves[0].get("ylabel", "NMSE") if curves else "NMSE"
    return svg_panels(title, [{
        "title": ylabel + " vs training tokens", "xlabel": "training tokens",
        "ylabel": ylabel, "logx": True, "logy": True,
        "series": [{"label": c["label"], "points": c["points"]}
                   for c in curves]}], width=640, height=380)


def planner_vs_nmse_svg(points, title):
    """Scatter of recoupling ratio against achieved NMSE over blocks."""
    series = [{"label": f"[{p['block'][0]},{p['block'][1]})",
               "points": [(p["recoupling"], p["nmse"])]} for p in points]
    return svg_panels(title, [{"title": "NMSE (FW k=3 midpoint) vs R",
                               "xlabel": "recoupling ratio R",
                               "ylabel": "NMSE", "logy": True,
                               "series": series}])
