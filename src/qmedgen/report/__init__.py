"""Self-contained HTML reports of runs, demos and benchmarks (images inline, no external files)."""

from qmedgen.report.html import build_report

__all__ = ["build_report"]
