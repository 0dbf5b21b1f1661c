"""Transforms: antialiasing, value ranges, channel conversion, crops and seeded flips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qmedgen.data import transforms as T
from qmedgen.errors import DataError
from qmedgen.images import to_uint8


def test_resize_is_antialiased():
    checker = ((torch.arange(64).view(-1, 1) + torch.arange(64).view(1, -1)) % 2).float().expand(1, 1, 64, 64)
    small = T.resize(checker, 8)
    assert small.shape == (1, 1, 8, 8)
    assert torch.allclose(small, torch.full_like(small, 0.5), atol=0.02)  # aliasing-free average
    arr = (checker[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)[None]
    out = T.resize_images(arr, 8)
    assert out.shape == (1, 8, 8, 1) and out.dtype == np.uint8 and abs(int(out.mean()) - 127) <= 3
    assert T.resize_images(arr, (64, 64)) is arr  # no-op when already that size
    assert T.resize(torch.rand(3, 10, 10), (5, 7)).shape == (3, 5, 7)
    u8 = T.resize(torch.full((1, 1, 8, 8), 200, dtype=torch.uint8), 3)
    assert u8.dtype == torch.uint8 and (u8 == 200).all()


def test_unit_range_round_trip():
    u8 = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
    x = T.to_unit_range(u8)
    assert x.shape == (1, 1, 16, 16) and x.min() == -1 and x.max() == 1
    assert torch.equal(to_uint8(x).permute(0, 2, 3, 1), torch.from_numpy(u8))
    assert to_uint8(torch.tensor([-3.0, 3.0])).tolist() == [0, 255]


def test_grayscale_rgb():
    rgb = torch.rand(2, 3, 5, 5)
    gray = T.to_grayscale(rgb)
    assert gray.shape == (2, 1, 5, 5)
    assert torch.allclose(gray[:, 0], 0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2])
    assert torch.equal(T.to_rgb(gray)[:, 2], gray[:, 0]) and T.to_rgb(rgb) is rgb
    arr = np.zeros((1, 2, 2, 3), np.uint8)
    arr[..., 1] = 255
    assert T.convert_channels(arr, 1)[0, 0, 0, 0] == 150  # round(0.587 * 255)
    assert T.convert_channels(T.convert_channels(arr, 1), 3).shape == (1, 2, 2, 3)
    with pytest.raises(DataError):
        T.to_grayscale(torch.rand(1, 2, 4, 4))


def test_center_crop():
    x = torch.arange(36.0).view(1, 1, 6, 6)
    assert torch.equal(T.center_crop(x, 2)[0, 0], torch.tensor([[14.0, 15.0], [20.0, 21.0]]))
    assert T.center_crop_array(np.zeros((3, 10, 6, 3))).shape == (3, 6, 6, 3)
    with pytest.raises(DataError, match="larger than the image"):
        T.center_crop(x, 7)


def test_flips_are_seeded_and_per_image():
    x = torch.rand(16, 3, 4, 4)
    a = T.random_hflip(x, generator=T.seeded_generator(1))
    b = T.random_hflip(x, generator=T.seeded_generator(1))
    c = T.random_hflip(x, generator=T.seeded_generator(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    flipped = [torch.equal(a[i], x[i].flip(-1)) for i in range(16)]
    assert 0 < sum(flipped) < 16  # per image, not all-or-nothing
    assert torch.equal(T.random_vflip(x, p=1.0), x.flip(-2)) and torch.equal(T.random_vflip(x, p=0.0), x)
    torch.manual_seed(5)
    d = T.random_vflip(x)
    torch.manual_seed(5)
    assert torch.equal(d, T.random_vflip(x))
    chain = T.Compose([T.to_grayscale, T.random_hflip, lambda t: T.resize(t, 2)])
    assert torch.equal(chain(x, T.seeded_generator(3)), chain(x, T.seeded_generator(3)))
    assert chain(x).shape == (16, 1, 2, 2)
