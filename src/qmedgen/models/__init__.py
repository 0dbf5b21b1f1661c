"""Generative networks: MediQ-GAN, diffusion U-Nets, and their classical counterparts."""
