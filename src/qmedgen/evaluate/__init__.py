"""Offline metrics, downstream utility and the benchmark harness.

Modules (one concept each):

- :mod:`~qmedgen.evaluate.extractors`: ``load_extractor("inception" | "domain:<dataset>" | PATH)``;
  :mod:`~qmedgen.evaluate.features`: the extractor interface and batched feature extraction (uint8 images in,
  features out; nothing is downloaded).
- :mod:`~qmedgen.evaluate.domain`: the domain classifier, a documented evaluation instrument trained once on a
  dataset's official training split and cached by content hash.
- :mod:`~qmedgen.evaluate.metrics`: FID, KID, precision/recall/density/coverage, diversity, memorisation,
  conditional accuracy, on (weighted) feature sets; :mod:`~qmedgen.evaluate.msssim`: MS-SSIM.
- :mod:`~qmedgen.evaluate.evaluation`: all metrics for one sample set with bootstrap confidence intervals;
  :mod:`~qmedgen.evaluate.stats`: bootstrap, t-intervals, paired tests.
- :mod:`~qmedgen.evaluate.utility`: train-on-real / real+synthetic / synthetic-only classifiers.
- :mod:`~qmedgen.evaluate.benchmark`: protocols (``protocols/*.yaml``), resumable cells, tables and plots;
  :mod:`~qmedgen.evaluate.protocol`: the protocols' typed schema.
- :mod:`~qmedgen.evaluate.pipeline`, :mod:`~qmedgen.evaluate.samples`: reading sample folders, writing JSON and
  markdown (:mod:`qmedgen.report.markdown`); :mod:`~qmedgen.evaluate.commands`: the CLI.

Conventions that differ from the papers' evaluations on purpose: generated images are compared with the
held-out test split (never the training images), FID on fewer samples than feature dimensions is flagged and
KID (unbiased, with small-set subset sizes) is reported next to it, every number carries a bootstrap CI, and
benchmark results are means over seeds with t-intervals and seed-paired comparisons.
"""
