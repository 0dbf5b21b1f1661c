"""Self-contained HTML reports of runs, demos and benchmarks (images inline, no external files), and the markdown
metrics table of an evaluation (:mod:`qmedgen.report.markdown`)."""

from qmedgen.report.html import build_report

__all__ = ["build_report"]
