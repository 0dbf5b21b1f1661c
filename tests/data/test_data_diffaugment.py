"""DiffAugment: differentiable, deterministic given a generator or the global seed, and correct geometry."""

from __future__ import annotations

import pytest
import torch

from qmedgen.data.diffaugment import DiffAugment, cutout, diff_augment, translation
from qmedgen.errors import ConfigError


def _gen(seed):
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def test_gradients_flow_and_match_finite_differences():
    x = torch.rand(1, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: diff_augment(t, generator=_gen(0)), (x,))
    y = diff_augment(x.float().detach().requires_grad_(), generator=_gen(1))
    y.sum().backward()


def test_backward_reaches_input():
    x = torch.rand(4, 3, 16, 16, requires_grad=True)
    diff_augment(x, "color,translation,cutout", generator=_gen(3)).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_deterministic_with_generator_and_global_seed():
    x = torch.rand(8, 3, 16, 16)
    assert torch.equal(diff_augment(x, generator=_gen(7)), diff_augment(x, generator=_gen(7)))
    assert not torch.equal(diff_augment(x, generator=_gen(7)), diff_augment(x, generator=_gen(8)))
    torch.manual_seed(11)
    a = diff_augment(x)
    torch.manual_seed(11)
    assert torch.equal(a, diff_augment(x))


def test_translation_shifts_with_zero_fill():
    x = torch.arange(1.0, 17.0).view(1, 1, 4, 4).repeat(32, 1, 1, 1)
    out = translation(x, ratio=0.25, generator=_gen(0))
    for img in out[:, 0]:
        found = False
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                ref = torch.zeros(4, 4)
                src = x[0, 0]
                ys, xs = slice(max(dy, 0), 4 + min(dy, 0)), slice(max(dx, 0), 4 + min(dx, 0))
                yd, xd = slice(max(-dy, 0), 4 + min(-dy, 0)), slice(max(-dx, 0), 4 + min(-dx, 0))
                ref[ys, xs] = src[yd, xd]
                found |= torch.equal(img, ref)
        assert found


def test_cutout_zeroes_a_bounded_square():
    x = torch.ones(64, 2, 8, 8)
    out = cutout(x, ratio=0.5, generator=_gen(0))
    zeros = (out[:, 0] == 0).sum(dim=(1, 2))
    assert (zeros <= 16).all() and (zeros > 0).all()
    assert torch.equal(out[:, 0], out[:, 1])  # same square for every channel


def test_policy_errors_and_module():
    with pytest.raises(ConfigError, match="unknown DiffAugment op 'zoom'"):
        diff_augment(torch.rand(1, 3, 4, 4), "translation,zoom")
    aug = DiffAugment("brightness", train_only=True).eval()
    x = torch.rand(2, 3, 4, 4)
    assert aug(x) is x
    assert aug.train()(x, generator=_gen(0)).shape == x.shape


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_runs_on_cuda_with_cpu_generator():
    x = torch.rand(4, 3, 8, 8, device="cuda", requires_grad=True)
    y = diff_augment(x, generator=_gen(0))
    assert y.device == x.device
    y.sum().backward()
    cpu = diff_augment(x.detach().cpu(), generator=_gen(0))
    assert torch.allclose(y.detach().cpu(), cpu, atol=1e-5)


def test_probability_gates_each_op_per_image():
    x = torch.rand(64, 3, 8, 8)
    assert torch.equal(diff_augment(x, "brightness", generator=_gen(0), p=0.0), x)
    assert torch.equal(diff_augment(x, "brightness", generator=_gen(0), p=1.0), diff_augment(x, "brightness",
                                                                                            generator=_gen(0)))
    out = diff_augment(x, "brightness", generator=_gen(1), p=0.5)
    changed = (out != x).flatten(1).any(1)
    assert 10 < int(changed.sum()) < 54  # about half the images, each wholly or not at all
    assert torch.equal(out[~changed], x[~changed])
    with pytest.raises(ConfigError, match="p must be in"):
        diff_augment(x, p=1.5)
