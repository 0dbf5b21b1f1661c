import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own feature/classifier cache."""
    monkeypatch.setenv("QMEDGEN_CACHE", str(tmp_path / "cache"))


class _TinyNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2)
        self.fc = torch.nn.Linear(8 * 13 * 13, 16)

    def forward(self, x):
        x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        return self.fc(torch.relu(self.conv(x)).flatten(1))


@pytest.fixture
def tiny_extractor_file(tmp_path):
    """A small random TorchScript feature network for 28x28 images (16-d features)."""
    path = tmp_path / "tiny.pt"
    torch.jit.script(_TinyNet()).save(str(path))
    return path


@pytest.fixture
def blood():
    from qmedgen.data import load_dataset

    return load_dataset("embedded-bloodmnist", split="train"), load_dataset("embedded-bloodmnist", split="test")


def noisy_copy(images: np.ndarray, scale: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(images.astype(np.float64) + rng.normal(scale=scale, size=images.shape), 0, 255).astype(np.uint8)
