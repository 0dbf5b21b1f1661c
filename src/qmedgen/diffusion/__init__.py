"""Gaussian diffusion pieces: noise schedules, noise sources (Gaussian, quantum, hybrid), time-step samplers,
loss weighting and reverse-process samplers (DDPM, DDIM). EMA weights: :mod:`qmedgen.train.ema`."""

from qmedgen.diffusion.noise import GaussianNoise, HybridNoise, QuantumNoise, make_noise
from qmedgen.diffusion.samplers import sample
from qmedgen.diffusion.schedules import NoiseSchedule, make_schedule, training_policy
from qmedgen.diffusion.timesteps import ImportanceTimesteps, UniformTimesteps, make_timestep_sampler
from qmedgen.diffusion.weighting import loss_weights

__all__ = [
    "GaussianNoise",
    "HybridNoise",
    "ImportanceTimesteps",
    "NoiseSchedule",
    "QuantumNoise",
    "UniformTimesteps",
    "loss_weights",
    "make_noise",
    "make_schedule",
    "make_timestep_sampler",
    "sample",
    "training_policy",
]
