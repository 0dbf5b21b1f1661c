"""qmedgen: quantum-inspired generative models for few-shot medical image synthesis."""

__version__ = "0.1.0"
