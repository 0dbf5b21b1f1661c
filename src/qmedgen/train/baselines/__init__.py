"""Trainers of the baseline model families (``qmedgen train dcgan|wgan-gp|patch-qgan|mosaiq|ddpm|fastgan``).

Each module exposes ``Config`` and ``Trainer`` like every family of :mod:`qmedgen.train.registry`; the GANs share
:mod:`qmedgen.train.baselines.gan`. See docs/baselines.md.
"""
