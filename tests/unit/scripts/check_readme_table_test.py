#!/usr/bin/env python3
"""Tests scripts/check-readme-table.py's comparison on small tables."""
import importlib.util
import pathlib
import unittest

ROOT = pathlib.Path(__file__).resolve().parents[3]
spec = importlib.util.spec_from_file_location(
    "check_readme_table", ROOT / "scripts" / "check-readme-table.py")
check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check)

README = """Some prose.

| method | k | KL_PQ | PPL |
|---|---|---|---|
| teacher | - | - | 3.713 |
| skip-3 | - | 0.2048 | 4.578 |

More prose.
"""

REPORT = """# Evaluation

| method | layers removed | k | NFE | KL_PQ | PPL |
|---|---|---|---|---|---|
| teacher | 0 | - | - | - | 3.713 |
| skip-1 | 1 | - | - | 0.0431 | 3.897 |
| skip-3 | 3 | - | - | 0.2048 | 4.578 |
"""


class CheckReadmeTableTest(unittest.TestCase):

    def test_identical_cells_pass_even_with_extra_columns_and_rows(self):
        code, lines = check.compare(README, REPORT, 0.02)
        self.assertEqual(code, 0)
        self.assertIn("6 of 6 cells identical", lines[-1])

    def test_small_difference_is_listed_but_passes(self):
        code, lines = check.compare(README, REPORT.replace("4.578", "4.580"), 0.02)
        self.assertEqual(code, 0)
        self.assertTrue(any("skip-3 / PPL" in l and "within" in l for l in lines))
        self.assertIn("5 of 6 cells identical", lines[-1])

    def test_large_difference_fails(self):
        code, lines = check.compare(README, REPORT.replace("0.2048", "0.3"), 0.02)
        self.assertEqual(code, 1)
        self.assertTrue(any("BEYOND" in l for l in lines))

    def test_missing_row_or_column_fails(self):
        code, lines = check.compare(README, REPORT.replace("| skip-3 |", "| skip-4 |"), 0.02)
        self.assertEqual(code, 1)
        self.assertTrue(any("row 'skip-3'" in l for l in lines))
        code, _ = check.compare(README, REPORT.replace("| PPL |", "| ppl |"), 0.02)
        self.assertEqual(code, 1)

    def test_text_cell_that_changes_fails(self):
        code, _ = check.compare(README, REPORT.replace("| 0 | - | - | - | 3.713", "| 0 | - | - | x | 3.713"), 0.02)
        self.assertEqual(code, 1)

    def test_no_table_is_a_usage_error(self):
        self.assertEqual(check.compare("no table", REPORT, 0.02)[0], 2)
        self.assertEqual(check.compare(README, "no table", 0.02)[0], 2)


if __name__ == "__main__":
    unittest.main()
