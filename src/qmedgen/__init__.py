"""qmedgen: quantum-inspired generative models for few-shot medical image synthesis.

.. include:: ../../docs/guide.md
"""

__version__ = "0.1.0"
