"""Trainers of the baseline model families (``qmedgen train dcgan|wgan-gp|patch-qgan|mosaiq|ddpm|fastgan``).

Each module exposes ``Config`` and ``Trainer`` like every family of :mod:`qmedgen.train.registry`; the GANs share
:class:`qmedgen.train.gan.GANTrainer` (as MediQ-GAN does). See docs/baselines.md.
"""
