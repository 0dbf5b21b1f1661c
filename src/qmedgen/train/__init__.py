"""Configs, run directories, checkpoints, training loops and sampling."""
