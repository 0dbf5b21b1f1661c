"""Config sections every model family shares: which data to train on, and how to run the training loop.

A family's top-level ``Config`` dataclass has ``data: DataConfig`` and ``train: TrainConfig`` fields next to its
own ``model`` (and other) sections, so that the CLI flags ``--data``, ``--size``, ``--n-per-class``, ``--steps`` ...
mean the same thing for every model.
"""

from __future__ import annotations

from dataclasses import dataclass

from qmedgen.config import option
from qmedgen.errors import ConfigError


@dataclass
class DataConfig:
    name: str = option("embedded-retinamnist", help="dataset name (see `qmedgen data list`) or folder:PATH")
    root: str | None = option(None, help="data directory (default $QMEDGEN_DATA or ~/.qmedgen/data)")
    split: str = option("train", choices=("train", "val", "test", "all"), help="training split ('all' = pooled)")
    size: int = option(28, choices=(28, 32, 64, 128, 224), help="image side length in pixels")
    channels: int | None = option(None, choices=(1, 3), help="force grayscale (1) or RGB (3); default: dataset's")
    classes: list[int] | None = option(None, help="keep only these class ids (default: all)")
    n_per_class: int | None = option(None, min=1, help="few-shot: images per class (stratified, seeded)")
    n_total: int | None = option(None, min=1, help="few-shot: total images (stratified, seeded)")
    subset_seed: int = option(0, help="seed of the few-shot draw (recorded with the indices)")

    def validate(self) -> None:
        if self.n_per_class is not None and self.n_total is not None:
            raise ConfigError("data.n_per_class and data.n_total are exclusive: set one of them")


@dataclass
class TrainConfig:
    steps: int = option(1000, min=1, help="training steps (a step is one generator/denoiser update)")
    batch_size: int = option(10, min=1, help="global batch size (split across ranks under torchrun)")
    seed: int = option(0, help="seed of initialisation, batches and noise")
    log_every: int = option(10, min=1, help="steps between metric log lines")
    checkpoint_every: int = option(500, min=1, help="steps between checkpoints (one is always written at the end)")
    keep_checkpoints: int = option(3, min=1, help="how many most recent checkpoints to keep")
    sample_every: int = option(500, min=0, help="steps between sample grids (0: only at the end)")
    grid_per_class: int = option(8, min=1, max=64, help="images per class in sample grids")
    device: str = option("auto", help="auto, cpu, cuda, cuda:N")
    amp: bool = option(False, help="bf16 autocast on CUDA (and on CPU where a family supports it); circuits stay fp32")
    out_dir: str = option("runs", help="parent directory of numbered run directories")
    tensorboard: bool = option(False, help="also log scalars to TensorBoard (needs the tensorboard package)")
