#!/usr/bin/env python3
"""Compares the README's default-job table with a report.md a run printed.

The README promises that `scripts/run-default-job.sh` prints the same table
on any machine of its kind (the teacher's pretraining is bounded by steps).
This checks that promise cell by cell: every row and column of the README's
excerpt must appear in the run's report.md (columns matched by name, so a
report with more columns still compares). It prints one line per cell that
differs and a summary, and exits

  0  every cell identical, or differences all within --tolerance (relative),
     which are listed so the log shows them;
  1  a cell differs by more than the tolerance, or a row/column is missing;
  2  usage error or unreadable files.

  scripts/check-readme-table.py --report .lft-default/run/report.md
"""
import argparse
import sys


def parse_tables(text):
    """Returns the Markdown tables of text as lists of rows of cells."""
    tables, current = [], []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("|") and line.endswith("|"):
            cells = [c.strip() for c in line[1:-1].split("|")]
            if all(set(c) <= set("-: ") and c for c in cells):
                continue  # the |---| separator
            current.append(cells)
        elif current:
            tables.append(current)
            current = []
    if current:
        tables.append(current)
    return tables


def results_table(text):
    """The first table whose header starts with "method"."""
    for table in parse_tables(text):
        if table and table[0] and table[0][0] == "method":
            return table
    return None


def as_dict(table):
    header = table[0]
    return header, {row[0]: dict(zip(header, row)) for row in table[1:]}


def relative_difference(a, b):
    try:
        x, y = float(a), float(b)
    except ValueError:
        return None
    scale = max(abs(x), abs(y))
    return 0.0 if scale == 0 else abs(x - y) / scale


def compare(readme_text, report_text, tolerance):
    """Returns (exit code, lines to print)."""
    expected = results_table(readme_text)
    actual = results_table(report_text)
    if expected is None:
        return 2, ["README has no table whose header starts with 'method'"]
    if actual is None:
        return 2, ["report has no table whose header starts with 'method'"]
    header, want = as_dict(expected)
    _, got = as_dict(actual)
    lines, worst, cells, identical = [], 0, 0, 0
    code = 0
    for label, row in want.items():
        if label not in got:
            lines.append(f"row '{label}': in the README, not in the report")
            code = 1
            continue
        for column in header[1:]:
            cells += 1
            if column not in got[label]:
                lines.append(f"column '{column}': in the README, not in the report")
                code = 1
                continue
            a, b = row[column], got[label][column]
            if a == b:
                identical += 1
                continue
            diff = relative_difference(a, b)
            if diff is None:
                lines.append(f"{label} / {column}: README '{a}', run '{b}'")
                code = 1
                continue
            worst = max(worst, diff)
            verdict = "within" if diff <= tolerance else "BEYOND"
            lines.append(f"{label} / {column}: README {a}, run {b} "
                         f"({diff:.2%}, {verdict} the {tolerance:.0%} tolerance)")
            if diff > tolerance:
                code = 1
    lines.append(f"check-readme-table: {identical} of {cells} cells identical"
                 + (f"; largest relative difference {worst:.2%}" if worst else ""))
    return code, lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", default="README.md")
    parser.add_argument("--report", required=True,
                        help="report.md printed by scripts/run-default-job.sh")
    parser.add_argument("--tolerance", type=float, default=0.02,
                        help="relative difference still accepted (default 0.02)")
    args = parser.parse_args()
    try:
        with open(args.readme, encoding="utf-8") as f:
            readme = f.read()
        with open(args.report, encoding="utf-8") as f:
            report = f.read()
    except OSError as e:
        print(f"check-readme-table: {e}", file=sys.stderr)
        return 2
    code, lines = compare(readme, report, args.tolerance)
    for line in lines:
        print(line)
    return code


if __name__ == "__main__":
    sys.exit(main())
