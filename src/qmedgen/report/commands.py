"""``qmedgen report`` (and ``qmedgen demo``, which ends in a report)."""

from __future__ import annotations

import argparse
from pathlib import Path

from qmedgen.report.html import build_report


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write a self-contained HTML report of a run, demo or benchmark directory")
    p.add_argument("path", type=Path, metavar="RUN_DIR_OR_BENCHMARK_DIR")
    p.add_argument("--out", type=Path, help="output HTML file (default PATH/report.html)")
    p.add_argument("--title")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    out = build_report(args.path, args.out, args.title)
    print(f"report written to {out}")
    return 0
