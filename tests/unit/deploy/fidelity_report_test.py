#!/usr/bin/env python3
"""Unit test of deploy/gpu/fidelity_report.py (the fidelity study's claims
logic, JSON and Markdown): synthetic rows where every claim holds, where each
one fails, rows missing ("not measured"), Spearman against hand-worked
values, the planner's block choice, and rows built from a report.json of the
evaluator's current format. Standard library only; run by ctest
(fidelity_report_test, label evaluator)."""
import copy
import json
import math
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", "..", "deploy", "gpu"))
import fidelity_report as fr  # noqa: E402

B25, B50, BEST, WORST = [6, 12], [6, 18], [12, 18], [0, 6]
CFG = {"block25": B25, "block50": B50, "skip3": 3,
       "scored_blocks": [B25, B50, BEST, WORST]}


def row(block, method, k=None, solver=None, kl_pq=0.1, ppl=10.0, nmse=0.01,
        skip=None, tokens=1000):
    return {"block": block, "method": method, "label": method, "k": k,
            "solver": solver, "nfe": None, "layers_removed": 0, "skip": skip,
            "training_tokens": tokens, "kl_x": kl_pq, "kl_x_softmax": None,
            "kl_x_lens": None, "nmse": nmse, "kl_pq": kl_pq, "ppl": ppl,
            "job": "j"}


def paper_like_rows():
    """Every claim holds: FW best at k=3 with a gentle rise to k=8, SFM
    rising with k, FW < SFM < regression < skip-3, NMSE ordered as R."""
    rows = []
    # NMSE of FW k=3 per block, ordered as the planner's R below.
    fw_nmse = {tuple(B25): 0.007, tuple(B50): 0.021, tuple(BEST): 0.004,
               tuple(WORST): 0.09}
    for b in (B25, B50, BEST, WORST):
        base = 0.25 if b == B25 else 0.74
        for k, f in ((1, 1.18), (2, 1.05), (3, 1.0), (4, 1.02), (8, 1.1)):
            for solver in ("midpoint", "euler"):
                rows.append(row(b, "fw", k, solver, kl_pq=base * f,
                                ppl=12 * f, nmse=fw_nmse[tuple(b)] * f))
        for k, f in ((1, 1.0), (2, 1.01), (3, 1.02), (4, 1.03), (8, 1.05)):
            rows.append(row(b, "sfm", k, "midpoint", kl_pq=base * 1.6 * f,
                            ppl=14 * f))
        rows.append(row(b, "regression", kl_pq=base * 1.2, ppl=12.5))
        rows.append(row(b, "skip", skip=3, kl_pq=base * 1.3, ppl=22.0,
                        tokens=0))
    return rows


PLANNER = [
    {"m": 6, "n": 12, "recoupling": 0.0, "recoupling_more": 0.02,
     "block_influence": 0.1, "angular": 0.2},
    {"m": 6, "n": 18, "recoupling": 0.0, "recoupling_more": 0.05,
     "block_influence": 0.2, "angular": 0.3},
    {"m": 12, "n": 18, "recoupling": 0.0, "recoupling_more": 0.01,
     "block_influence": 0.05, "angular": 0.1},
    {"m": 0, "n": 6, "recoupling": 0.53, "recoupling_more": 0.6,
     "block_influence": 0.5, "angular": 0.4},
]


def by_id(claims):
    return {c["id"]: c for c in claims}


class SpearmanTest(unittest.TestCase):
    def test_hand_worked_without_ties(self):
        # d = rank differences (-1, 1, -1, 1, 0): 1 - 6 * 4 / (5 * 24) = 0.8.
        self.assertAlmostEqual(fr.spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]),
                               0.8, places=12)

    def test_hand_worked_with_ties(self):
        # ranks x (1, 2.5, 2.5, 4), y (1, 3, 2, 4): sxy 4.5, sxx 4.5,
        # syy 5 -> 4.5 / sqrt(22.5) = sqrt(0.9).
        self.assertAlmostEqual(fr.spearman([10, 20, 20, 30], [1, 3, 2, 4]),
                               math.sqrt(0.9), places=12)
        self.assertEqual(fr.average_ranks([5, 1, 5, 5]), [3.0, 1.0, 3.0, 3.0])

    def test_reversed_and_degenerate(self):
        self.assertAlmostEqual(fr.spearman([1, 2, 3], [9, 5, 1]), -1.0)
        self.assertIsNone(fr.spearman([1, 1, 1], [1, 2, 3]))
        self.assertIsNone(fr.spearman([1], [2]))


class ClaimsTest(unittest.TestCase):
    def test_every_claim_holds_on_paper_like_rows(self):
        claims = by_id(fr.decide_claims(paper_like_rows(), PLANNER, CFG))
        self.assertEqual(set(claims), set(fr.CLAIM_RULES))
        for cid, c in claims.items():
            self.assertIs(c["holds"], True, (cid, c["numbers"]))
            self.assertTrue(c["rule"])
        rho = claims["recoupling_orders_nmse"]["numbers"][
            "spearman_recoupling_nmse"]
        self.assertAlmostEqual(rho, 1.0)
        self.assertIn("[6, 18)", claims["fw_beats_sfm_50"]["rule"])

    def mutate(self, fn):
        rows = paper_like_rows()
        for r in rows:
            fn(r)
        return by_id(fr.decide_claims(rows, PLANNER, CFG))

    def test_sfm_beating_fw_at_50(self):
        def f(r):
            if r["block"] == B50 and r["method"] == "sfm":
                r["kl_pq"] *= 0.1
                r["ppl"] = 5.0
        c = self.mutate(f)
        self.assertIs(c["fw_beats_sfm_50"]["holds"], False)

    def test_fw_best_at_k8_or_degrading_fast(self):
        def best_at_8(r):
            if r["method"] == "fw" and r["k"] == 8 and r["block"] == B25:
                r["kl_pq"] = 0.01
        self.assertIs(self.mutate(best_at_8)["fw_best_near_k3"]["holds"], False)

        def steep(r):
            if r["method"] == "fw" and r["k"] == 8 and r["block"] == B50:
                r["kl_pq"] *= 1.4  # 1.1 * 1.4 = 1.54 x best > 1.25
        c = self.mutate(steep)["fw_best_near_k3"]
        self.assertIs(c["holds"], False)
        self.assertTrue(c["numbers"]["[6, 12)"]["holds"])

    def test_sfm_getting_better_with_k(self):
        def f(r):
            if r["method"] == "sfm":
                r["kl_pq"] = 1.0 / r["k"]
        c = self.mutate(f)["sfm_better_as_k_falls"]
        self.assertIs(c["holds"], False)
        self.assertAlmostEqual(c["numbers"]["[6, 18)"]["spearman_k_kl_pq"],
                               -1.0)

    def test_skip3_beating_the_flow_layer(self):
        def f(r):
            if r["method"] == "skip" and r["block"] == B50:
                r["ppl"] = 11.0  # below FW k=3's 12
        self.assertIs(self.mutate(f)["flow12_beats_skip3"]["holds"], False)

    def test_recoupling_disordered(self):
        rows = paper_like_rows()
        planner = copy.deepcopy(PLANNER)
        # Reverse the planner's order: the best block by R now has the
        # worst NMSE.
        rs = [p["recoupling_more"] for p in planner]
        for p, r in zip(planner, reversed(sorted(rs))):
            p["recoupling_more"] = r
        planner[3]["recoupling_more"] = 0.0
        c = by_id(fr.decide_claims(rows, planner, CFG))[
            "recoupling_orders_nmse"]
        self.assertIs(c["holds"], False)
        self.assertLess(c["numbers"]["spearman_recoupling_nmse"], 0.5)

    def test_recoupling_tied_on_every_block_orders_nothing(self):
        planner = copy.deepcopy(PLANNER)
        for p in planner:
            p["recoupling_more"] = 0.0
        c = by_id(fr.decide_claims(paper_like_rows(), planner, CFG))[
            "recoupling_orders_nmse"]
        self.assertIs(c["holds"], False)
        self.assertIn("orders nothing", c["numbers"]["note"])

    def test_recoupling_tied_on_some_blocks_says_so(self):
        planner = copy.deepcopy(PLANNER)
        for p in planner[:3]:
            p["recoupling_more"] = 0.0
        planner[3]["recoupling_more"] = 0.2
        c = by_id(fr.decide_claims(paper_like_rows(), planner, CFG))[
            "recoupling_orders_nmse"]
        self.assertIsNotNone(c["numbers"]["spearman_recoupling_nmse"])
        self.assertIn("3 of the 4 blocks scored share R = 0",
                      c["numbers"]["note"])

    def test_recoupling_distinct_has_no_tie_note(self):
        c = by_id(fr.decide_claims(paper_like_rows(), PLANNER, CFG))[
            "recoupling_orders_nmse"]
        self.assertNotIn("note", c["numbers"])

    def test_regression_beating_fw(self):
        def f(r):
            if r["method"] == "regression" and r["block"] == B25:
                r["kl_pq"] = 0.01
        c = self.mutate(f)["fw_beats_regression"]
        self.assertIs(c["holds"], False)
        self.assertFalse(c["numbers"]["[6, 12)"]["holds"])
        self.assertTrue(c["numbers"]["[6, 18)"]["holds"])

    def test_missing_rows_are_not_measured(self):
        rows = [r for r in paper_like_rows()
                if r["method"] not in ("sfm", "regression")
                and r["block"] in (B25, B50)]
        c = by_id(fr.decide_claims(rows, PLANNER, CFG))
        self.assertIsNone(c["fw_beats_sfm_50"]["holds"])
        self.assertIsNone(c["sfm_better_as_k_falls"]["holds"])
        self.assertIsNone(c["fw_beats_regression"]["holds"])
        # Two blocks scored: too few for a rank correlation.
        self.assertIsNone(c["recoupling_orders_nmse"]["holds"])
        self.assertIs(c["fw_best_near_k3"]["holds"], True)
        self.assertEqual(fr.verdict_word(None), "not measured")


class PlannerTest(unittest.TestCase):
    def matrix(self, L, value):
        return [[None if n <= m else value(m, n) for n in range(L + 1)]
                for m in range(L + 1)]

    def test_best_and_worst_exclude_the_fixed_block(self):
        L = 8
        # R is lowest for [2, 4) (the excluded block), then [5, 7); highest
        # for [0, 2). Ties at 256 tokens are broken by the larger count.
        r_more = {(0, 2): 0.7, (1, 3): 0.3, (2, 4): 0.0, (3, 5): 0.2,
                  (4, 6): 0.2, (5, 7): 0.05, (6, 8): 0.1}
        m256 = {"num_layers": L, "ratio": self.matrix(L, lambda m, n: 0.0)}
        more = {"num_layers": L,
                "ratio": self.matrix(L, lambda m, n: r_more.get((m, n), 0.5)),
                "block_influence": self.matrix(L, lambda m, n: 0.1 * m),
                "angular_distance": self.matrix(L, lambda m, n: 0.01 * n)}
        blocks = fr.planner_blocks(m256, more)
        self.assertEqual(len(blocks), L * (L + 1) // 2)
        best, worst = fr.pick_best_worst(blocks, 2, exclude=[[2, 4]])
        self.assertEqual(best, [5, 7])
        self.assertEqual(worst, [0, 2])
        # Ties in R: [3, 5) and [4, 6) both 0.2; angular breaks them.
        order = sorted([b for b in blocks if b["n"] - b["m"] == 2],
                       key=fr.ranking_key)
        self.assertEqual([(b["m"], b["n"]) for b in order],
                         [(2, 4), (5, 7), (6, 8), (3, 5), (4, 6), (1, 3),
                          (0, 2)])


REPORT = {
    "format": "lft-eval-report-1", "job": "j-4", "checkpoint": "step-0000000040",
    "num_layers": 8, "block": {"first_layer": 2, "end_layer": 6},
    "method": "fw", "checkpoint_step": 40, "checkpoint_tokens": 40960,
    "losses": [3.0, 2.0], "teacher_perplexity": 30.5,
    "regression": {"steps": 40, "final_loss": 0.5},
    "rows": [
        {"method": "teacher", "label": "teacher", "solver": "",
         "layers_removed": 0, "skip": 0, "k": 0, "nfe": 0, "kl_x": 0,
         "nmse": 0, "kl_pq": 0, "ppl": 30.5},
        {"method": "skip", "label": "skip-1", "solver": "", "layers_removed": 1,
         "skip": 1, "k": 0, "nfe": 0, "kl_x": 0.2, "nmse": 0.3, "kl_pq": 0.2,
         "ppl": 40.0},
        {"method": "regression", "label": "regression", "solver": "",
         "layers_removed": 3, "skip": 0, "k": 0, "nfe": 1, "kl_x": 0.05,
         "nmse": 0.02, "kl_pq": 0.05, "ppl": 32.0},
        {"method": "fw", "label": "FW k=3 midpoint", "solver": "midpoint",
         "layers_removed": 3, "skip": 0, "k": 3, "nfe": 6, "kl_x": 0.04,
         "nmse": 0.015, "kl_pq": 0.04, "ppl": 31.0, "kl_x_softmax": 0.03},
    ],
}


class RowsAndDocsTest(unittest.TestCase):
    def test_rows_from_a_current_report(self):
        job = {"id": "j-4", "block": [2, 6], "method": "fw",
               "batch_sequences": 16, "sequence_length": 64,
               "scored_baselines": True}
        rows = fr.rows_from_report(REPORT, job)
        self.assertEqual([r["method"] for r in rows],
                         ["teacher", "skip", "regression", "fw"])
        reg = fr.find_row(rows, [2, 6], "regression")
        self.assertEqual(reg["training_tokens"], 40 * 16 * 64)
        fw = fr.find_row(rows, [2, 6], "fw", 3, "midpoint")
        self.assertEqual(fw["training_tokens"], 40960)
        self.assertEqual(fw["kl_x_softmax"], 0.03)
        self.assertIsNone(fw["kl_x_lens"])  # field not in this report
        self.assertEqual(fr.find_row(rows, [2, 6], "skip", skip=1)["ppl"], 40.0)
        # A report that names regression_tokens wins over the derivation.
        rep = dict(REPORT, regression_tokens=1234)
        self.assertEqual(fr.find_row(fr.rows_from_report(rep, job), [2, 6],
                                     "regression")["training_tokens"], 1234)
        # Without scored_baselines the teacher and skip rows are left out.
        job2 = dict(job, scored_baselines=False)
        self.assertEqual([r["method"] for r in fr.rows_from_report(REPORT, job2)],
                         ["regression", "fw"])

    def test_json_and_markdown(self):
        rows = paper_like_rows()
        claims = fr.decide_claims(rows, PLANNER, CFG)
        meta = {"scale": "rehearsal",
                "blocks": [{"block": B25, "role": "25%"},
                           {"block": B50, "role": "50%"}]}
        doc = fr.compose_json({"layers": 24, "hidden": 512}, rows,
                              {"blocks": PLANNER, "size": 6, "tokens": 256,
                               "more_tokens": 512, "best": BEST,
                               "worst": WORST, "rule": "lowest R"},
                              claims, meta)
        json.loads(json.dumps(doc))  # serialisable
        self.assertEqual(set(doc), {"format", "meta", "teacher", "rows",
                                    "planner", "claims"})
        md = fr.compose_markdown(doc, "How it ran.")
        self.assertIn("CPU rehearsal", md)
        self.assertIn("2.6 B", md)
        for c in claims:
            self.assertIn(c["claim"], md)
            self.assertIn(c["rule"], md)
        self.assertIn("**holds**", md)
        self.assertIn("| fw | [6, 12) |", md)
        svg = fr.kl_nmse_vs_k_svg(rows, B25, "t")
        self.assertTrue(svg.startswith("<svg") and "polyline" in svg)
        self.assertIn("no data", fr.nmse_vs_tokens_svg([], "t"))

    def test_budget_note_names_tokens_per_method(self):
        note = fr.budget_note([row(B25, "fw", 3, "midpoint", tokens=16_000_000),
                               row(B25, "regression", tokens=None)])
        self.assertIn("fw 16.00 M (0.615% of the paper's 2.6 B)", note)
        self.assertIn("regression not measured", note)


if __name__ == "__main__":
    unittest.main()
