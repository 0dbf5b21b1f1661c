"""MediQ-GAN generator: shapes for every option, gradients, rank of the readout, counterparts, bad configs."""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch

from qmedgen.config import from_dict
from qmedgen.errors import ConfigError
from qmedgen.models.critic import ConditionalCritic, PenaltyLeakyReLU, gradient_penalty
from qmedgen.models.mediqgan import MediQGANGenerator, ModelConfig
from qmedgen.models.mediqgan_quantum import MatchedMLP, mediqgan_ansatz, subgenerator_sites
from qmedgen.quantum import QuantumLayer, expval

TINY = {
    "latent_dim": 8,
    "feature_channels": 8,
    "split_ratio": 0.5,
    "n_subgenerators": 2,
    "n_qubits": 4,
    "depth": 2,
    "quantum_channels": 4,
    "skip_channels": 4,
    "critic_channels": [8, 8, 8, 8, 8],
    "critic_embed_dim": 8,
    "prototypes": {"init": "random", "dim": 12, "hidden": 16},
}
WIDTHS = {28: [16, 8], 32: [16, 8], 64: [16, 8, 8], 128: [16, 8, 8, 8]}


def tiny(size: int = 28, **over) -> tuple[ModelConfig, MediQGANGenerator]:
    data = {**TINY, "decoder_channels": WIDTHS[size], **over}
    if "prototypes" in over:
        data["prototypes"] = {**TINY["prototypes"], **over["prototypes"]}
    cfg = from_dict(ModelConfig, data)
    torch.manual_seed(0)
    return cfg, MediQGANGenerator(cfg, n_classes=3, image_size=size, channels=3)


@pytest.mark.parametrize("size", [28, 32, 64, 128])
@pytest.mark.parametrize("decoder", ["style2", "vanilla"])
def test_image_shapes_and_range(size, decoder):
    _, g = tiny(size, decoder=decoder)
    y = torch.tensor([0, 2])
    x = g(g.sample_latent(y), y)
    assert x.shape == (2, 3, size, size)
    assert torch.isfinite(x).all() and x.abs().max() <= 1
    critic = ConditionalCritic(3, size, 3, widths=(8, 8, 8, 8, 8), embed_dim=8)
    assert critic(x, y).shape == (2,)


@pytest.mark.parametrize(
    "over",
    [
        {"readout": "all"},
        {"n_subgenerators": 0},
        {"quantum_stream": "matched-mlp"},
        {"quantum_stream": "matched-mlp", "readout": "all"},
        {"skip_connections": False},
        {"prototypes": {"enabled": False}},
        {"prototypes": {"enabled": False}, "latent_noise": "normal", "skip_connections": True},
        {"encoder": "linear"},
        {"quantum_map": "linear"},
        {"decoder_upsample": "bilinear"},
        {"quantum_map": "linear", "readout": "all", "quantum_stream": "matched-mlp"},
        {"n_subgenerators": 16, "split_ratio": 0.25},
    ],
)
def test_option_shapes(over):
    cfg, g = tiny(32, **over)
    y = torch.tensor([0, 1, 2])
    z = g.sample_latent(y)
    assert z.shape == (3, cfg.latent_dim)
    s = g.streams(z, y)
    q_ch = 0 if cfg.n_subgenerators == 0 else cfg.quantum_channels
    assert s["classical"].shape == (3, cfg.feature_channels - cfg.quantum_split, 8, 8)
    assert s["quantum"].shape == (3, q_ch, 8, 8)
    assert s["fused"].shape[1] == s["classical"].shape[1] + q_ch
    assert g(z, y).shape == (3, 3, 32, 32)
    if cfg.n_subgenerators == 0:
        assert g.quantum_layer is None and g.param_groups()["quantum"] == []


def test_latent_without_prototypes_respects_adaptive_bound():
    _, g = tiny(28, prototypes={"enabled": False}, latent_noise="bounded-uniform")
    g.set_noise_bound(0.3)
    z = g.sample_latent(torch.zeros(500, dtype=torch.long))
    assert z.min() >= 0 and z.max() < 0.3 and z.max() > 0.25
    _, g = tiny(28, prototypes={"enabled": False})  # authors' code: N(0, I) * ub
    g.set_noise_bound(0.3)
    z = g.sample_latent(torch.zeros(2000, dtype=torch.long))
    assert abs(z.std().item() - 0.3) < 0.02 and g.uses_noise_bound


def test_sites_follow_reference():
    assert subgenerator_sites(3).tolist() == [0, 8, 15]
    assert subgenerator_sites(5).tolist() == [0, 4, 8, 11, 15]
    assert subgenerator_sites(16).tolist() == list(range(16))
    assert subgenerator_sites(1).tolist() == [0]


def test_circuit_map_is_the_engine_circuit():
    _, g = tiny(28)
    layer = g.quantum_layer
    assert isinstance(layer, QuantumLayer) and layer.batch_shape == (2,)
    assert layer.weight.shape == (2, 2, 1, 4)  # [K, depth, rotations, n]
    assert layer.weight.min() >= 0 and layer.weight.max() < 1  # U[0, 1) as the reference code
    angles = torch.randn(5, 2, 4)
    ref = expval(mediqgan_ansatz(4, 2), angles, layer.weight)
    torch.testing.assert_close(g.circuit_map(angles), ref)
    # each sub-generator has its own circuit: perturbing circuit 1 leaves circuit 0's outputs unchanged
    with torch.no_grad():
        layer.weight[1] += 0.5
    out = g.circuit_map(angles)
    torch.testing.assert_close(out[:, 0], ref[:, 0])
    assert not torch.allclose(out[:, 1], ref[:, 1])


def test_readout_placed_at_sites():
    _, g = tiny(28, n_subgenerators=2)  # sites 0 and 15
    y = torch.tensor([0])
    z = g.sample_latent(y)
    f = g._encode(z, y)
    vals = g.circuit_map(g._angles(f)).mean(-1)  # [1, K]
    assert g.quantum_proj.in_channels == 2  # one channel per sub-generator (readout "mean")
    with torch.no_grad():
        g.quantum_proj.weight.zero_()
        g.quantum_proj.weight[0, 1] = 1.0  # output channel 0 reads sub-generator 1's channel
        g.quantum_proj.bias.zero_()
        g.base = 4  # read the 4x4 grid itself (interpolation to 4x4 is the identity)
        q = g._quantum_stream(f)[0, 0]
    expected = torch.zeros(16)
    expected[15] = vals[0, 1]
    torch.testing.assert_close(q.flatten(), expected)
    _, g_all = tiny(28, n_subgenerators=2, readout="all")
    assert g_all.quantum_proj.in_channels == 2 * 4


def _readout_reach(g: MediQGANGenerator) -> torch.Tensor:
    """[K, r, r]: which positions of the quantum map each sub-generator's readout moves (|d map / d readout| > 0)."""
    y = torch.tensor([0])
    f = g._encode(g.sample_latent(y), y).detach()
    k, n = g.K, g.cfg.n_qubits
    out = torch.zeros(1, k, n, requires_grad=True)
    g.circuit_map = lambda angles: out + 0 * angles  # the readouts become the variables
    reach = []
    for i in range(k):
        q = g._quantum_stream(f)  # [1, C, r, r]
        jac = torch.stack([torch.autograd.grad(q[0, :, a, b].sum(), out, retain_graph=True)[0][0, i].abs().sum()
                           for a in range(q.shape[2]) for b in range(q.shape[3])])
        reach.append(jac.view(q.shape[2], q.shape[3]) > 0)
    return torch.stack(reach)


def test_linear_quantum_map_lets_every_readout_reach_the_whole_map():
    _, g = tiny(28, quantum_map="linear")
    assert isinstance(g.quantum_proj, torch.nn.Linear) and g.quantum_proj.in_features == 2  # K=2, mean readout
    assert g.quantum_proj.out_features == g.cfg.quantum_channels * 7 * 7
    assert _readout_reach(g).all()
    _, paper = tiny(28)  # sites (paper): sub-generator 0 (site 0, top-left) cannot reach the opposite corner
    reach = _readout_reach(paper)
    assert reach[0, 0, 0] and not reach[0, -1, -1] and reach[1, -1, -1] and not reach[1, 0, 0]
    assert paper.cfg.quantum_map == "sites"


def _quantum_jacobian_rank(readout: str) -> int:
    _, g = tiny(28, readout=readout, n_subgenerators=2, prototypes={"enabled": False}, latent_noise="normal")
    g = g.double()
    z = torch.randn(1, g.cfg.latent_dim, dtype=torch.float64)
    m = g.streams(z, torch.tensor([1]))["quantum"][0].numel()
    # all Jacobian rows from ONE backward (the engine's adjoint backward runs once per forward): m copies of z,
    # copy i back-propagates output i only
    zs = z.expand(m, -1).clone().requires_grad_(True)
    out = g.streams(zs, torch.ones(m, dtype=torch.long))["quantum"].flatten(1)
    (out * torch.eye(m, dtype=out.dtype)).sum().backward()
    return int(torch.linalg.matrix_rank(zs.grad, rtol=1e-7))


def test_mean_readout_caps_rank_at_k():
    assert _quantum_jacobian_rank("mean") <= 2
    assert _quantum_jacobian_rank("all") > 2


@pytest.mark.parametrize("k,n,depth", [(3, 16, 6), (5, 16, 8), (2, 4, 2), (1, 8, 3)])
def test_matched_mlp_parameter_count(k, n, depth):
    mlp = MatchedMLP(k, n, target_params=depth * n)
    count = sum(p.numel() for p in mlp.parameters())
    target = k * depth * n
    assert abs(count - target) <= k * (n + 0.5)  # nearest hidden width: within half a unit per sub-generator
    if (k, n, depth) == (3, 16, 6):
        assert count == 297  # h = 3: 3 * 3 * 33, vs 288 circuit weights (3 %)
    out = mlp(torch.randn(4, k, n))
    assert out.shape == (4, k, n) and out.abs().max() <= 1


def test_matched_counterpart_reports_counts():
    _, g = tiny(28, quantum_stream="matched-mlp")
    counts = g.quantum_parameter_count
    assert counts["circuit_equivalent"] == 2 * 2 * 4
    assert abs(counts["actual"] - counts["circuit_equivalent"]) <= 2 * 4.5
    assert g.quantum_layer is None and len(g.param_groups()["matched_mlp"]) == 3


def test_gradients_reach_circuits_prototypes_and_skips():
    _, g = tiny(28)
    y = torch.tensor([0, 1, 2, 1])
    x = g(g.sample_latent(y), y)
    loss = x.square().mean() + g.prototypes.separation_loss()
    loss.backward()
    groups = {name: p for name, p in g.named_parameters()}
    for name in ["quantum_layer.weight", "prototypes.prototypes", "prototypes.sigma_raw", "skips.scales"]:
        grad = groups[name].grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    assert (groups["skips.scales"].grad != 0).all()
    for name, p in groups.items():
        assert p.grad is not None, f"{name} gets no gradient"


def test_param_groups_partition_parameters():
    _, g = tiny(28)
    groups = g.param_groups()
    ids = [id(p) for ps in groups.values() for p in ps]
    assert len(ids) == len(set(ids)) == len(list(g.parameters()))
    assert [p.shape for p in groups["quantum"]] == [torch.Size([2, 2, 1, 4])]
    assert any(p is g.skips.scales for p in groups["decoder"])
    torch.testing.assert_close(g.skips.scales.detach(), torch.full((2,), 0.05))


@pytest.mark.parametrize("over", [
    {},
    {"n_subgenerators": 0, "decoder": "vanilla", "skip_connections": False},
    {"quantum_stream": "matched-mlp", "encoder": "linear", "prototypes": {"enabled": False}},
])
def test_param_groups_route_every_submodule_explicitly(over):
    from qmedgen.models.mediqgan import PARAM_GROUPS

    _, g = tiny(28, **over)
    routed = {head for heads in PARAM_GROUPS.values() for head in heads}
    assert {name.split(".")[0] for name, _ in g.named_parameters()} <= routed
    assert list(g.param_groups()) == list(PARAM_GROUPS)  # the optimiser's group order (checkpoints depend on it)
    g.refiner = torch.nn.Conv2d(3, 3, 1)  # a new submodule must not silently train with the encoder's lr
    with pytest.raises(RuntimeError, match="refiner"):
        g.param_groups()


def test_seeded_construction_and_sampling_are_deterministic():
    _, a = tiny(28)
    _, b = tiny(28)
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values()):
        torch.testing.assert_close(pa, pb)
    y = torch.tensor([0, 1])
    xa = a(a.sample_latent(y, generator=torch.Generator().manual_seed(3)), y, noise=False)
    xb = b(b.sample_latent(y, generator=torch.Generator().manual_seed(3)), y, noise=False)
    torch.testing.assert_close(xa, xb)


def test_noise_injection_switch():
    _, g = tiny(28)
    with torch.no_grad():
        for m in g.modules():
            if m.__class__.__name__ == "NoiseInjection":
                m.weight.fill_(0.5)
    y = torch.tensor([0])
    z = g.sample_latent(y)
    torch.testing.assert_close(g(z, y, noise=False), g(z, y, noise=False))
    assert not torch.allclose(g(z, y), g(z, y))


@pytest.mark.parametrize(
    "over,match",
    [
        ({"split_ratio": 0.0}, "split_ratio"),
        ({"split_ratio": 1.0}, "split_ratio"),
        ({"n_subgenerators": 17}, "n_subgenerators"),
        ({"readout": "median"}, "readout"),
        ({"quantum_stream": "mlp"}, "quantum_stream"),
        ({"circuit_init": "zeros"}, "circuit_init"),
        ({"decoder_channels": [8]}, "decoder_channels"),
        ({"prototypes": {"sigma_min": 0.9}}, "sigma"),
        ({"prototypes": {"init": "file"}}, "prototypes.file"),
        ({"n_qubit": 4}, "Did you mean 'n_qubits'"),
    ],
)
def test_bad_config_values_are_clear(over, match):
    data = {**TINY, "decoder_channels": WIDTHS[28], **over}
    if "prototypes" in over:
        data["prototypes"] = {**TINY["prototypes"], **over["prototypes"]}
    with pytest.raises(ConfigError, match=match):
        cfg = from_dict(ModelConfig, data)
        MediQGANGenerator(cfg, n_classes=3, image_size=28)


def test_bad_image_size():
    cfg = from_dict(ModelConfig, TINY)
    with pytest.raises(ConfigError, match="image size"):
        MediQGANGenerator(cfg, n_classes=3, image_size=48)


@pytest.mark.parametrize("kind", ["wgan-gp", "bce"])
def test_critic_and_gradient_penalty(kind):
    critic = ConditionalCritic(3, 28, 3, widths=(8, 8, 8), embed_dim=8, kind=kind)
    real, fake = torch.rand(4, 3, 28, 28) * 2 - 1, torch.rand(4, 3, 28, 28) * 2 - 1
    y = torch.tensor([0, 1, 2, 0])
    gp = gradient_penalty(critic, real, fake, y)
    assert gp.dim() == 0 and torch.isfinite(gp) and gp >= 0
    gp.backward()
    assert all(p.grad is not None for p in critic.features.parameters())
    # the class projection makes the score depend on the label
    assert not torch.allclose(critic(real, y), critic(real, (y + 1) % 3))
    with pytest.raises(ConfigError, match="critic"):
        ConditionalCritic(3, 28, 3, kind="hinge")


def test_gradient_penalty_precision_follows_the_autocast_choice():
    """Default: float32 even inside a bf16 autocast region (bit-identical to no region); ``in_autocast=True``: the
    region's bf16, close to float32 in value and weight gradient."""
    torch.manual_seed(0)
    critic = ConditionalCritic(3, 28, 3, widths=(16, 16, 16), embed_dim=8)
    real, fake = torch.rand(6, 3, 28, 28) * 2 - 1, torch.rand(6, 3, 28, 28) * 2 - 1
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    params = list(critic.features.parameters())

    def penalty(region: bool, in_autocast: bool):
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if region else contextlib.nullcontext()
        with ctx:
            gp = gradient_penalty(critic, real, fake, y, torch.Generator().manual_seed(3), in_autocast=in_autocast)
        return gp, torch.cat([g.flatten() for g in torch.autograd.grad(gp, params)])

    exact, g_exact = penalty(False, False)
    same, g_same = penalty(True, False)
    assert torch.equal(exact, same) and torch.equal(g_exact, g_same)
    half, g_half = penalty(True, True)
    assert not torch.equal(g_half, g_exact)  # it did run in bf16
    assert abs(half.item() - exact.item()) <= 0.01 * exact.item()
    assert (g_half - g_exact).norm() <= 0.05 * g_exact.norm()


def test_penalty_leaky_relu_skips_the_zero_pass_and_changes_nothing():
    """The critic's activation gives the penalty and its weight gradient of nn.LeakyReLU bit for bit, and its double
    backward no longer runs back through the interpolates' forward graph (nn.LeakyReLU's does, with zeros)."""
    torch.manual_seed(0)
    critic = ConditionalCritic(3, 28, 3, widths=(8, 8, 8), embed_dim=8)
    assert any(isinstance(m, PenaltyLeakyReLU) for m in critic.features)
    native = copy.deepcopy(critic)
    for i, m in enumerate(native.features):
        if isinstance(m, PenaltyLeakyReLU):
            native.features[i] = torch.nn.LeakyReLU(m.negative_slope)
    real, fake = torch.rand(4, 3, 28, 28) * 2 - 1, torch.rand(4, 3, 28, 28) * 2 - 1
    y = torch.tensor([0, 1, 2, 0])

    def run(net):
        calls = []  # gradients reaching the first conv's output in the interpolates' forward graph

        def watch(mod, inp, out):
            out.register_hook(lambda g: calls.append(g) if g is not None else None)

        handle = net.features[0].register_forward_hook(watch)
        gp = gradient_penalty(net, real, fake, y, torch.Generator().manual_seed(1))
        handle.remove()
        first = len(calls)  # the penalty's own gradient w.r.t. the interpolates
        grads = torch.autograd.grad(gp, list(net.parameters()), allow_unused=True)
        return gp, grads, first, len(calls) - first

    gp, grads, first, later = run(critic)
    gp_n, grads_n, first_n, later_n = run(native)
    assert torch.equal(gp, gp_n)
    assert all((a is None and b is None) or torch.equal(a, b) for a, b in zip(grads, grads_n))
    assert (first, later) == (1, 0)
    assert (first_n, later_n) == (1, 1)  # the wasted pass the custom activation removes
    x = torch.randn(50, requires_grad=True)
    act = PenaltyLeakyReLU(0.2)
    assert torch.equal(act(x), torch.nn.functional.leaky_relu(x, 0.2))
    (g,) = torch.autograd.grad(act(x).sum(), x)
    assert torch.equal(g, torch.where(x > 0, 1.0, 0.2))


def test_grayscale_images():
    cfg = from_dict(ModelConfig, {**TINY, "decoder_channels": WIDTHS[32]})
    g = MediQGANGenerator(cfg, n_classes=10, image_size=32, channels=1)
    y = torch.arange(4)
    x = g(g.sample_latent(y), y)
    assert x.shape == (4, 1, 32, 32)
    assert ConditionalCritic(10, 32, 1, widths=(8, 8, 8), embed_dim=8)(x, y).shape == (4,)


def test_upsample_conv_equals_upsampling_then_conv():
    """The decoder's folded nearest-upsample + 3x3 conv is the same function as the two ops it replaces."""
    import torch.nn.functional as F

    from qmedgen.models.mediqgan import upsample_conv3x3

    g = torch.Generator().manual_seed(0)
    for h, w, bias, cl in [(4, 4, True, False), (3, 5, False, False), (1, 1, True, False), (3, 5, True, True)]:
        x = torch.randn(2, 3, h, w, generator=g, dtype=torch.float64)
        if cl:  # channels-last maps stay channels-last (what the trainer uses on the CPU)
            x = x.contiguous(memory_format=torch.channels_last)
        x.requires_grad_(True)
        conv = torch.nn.Conv2d(3, 4, 3, padding=1, bias=bias).double()
        ref = conv(F.interpolate(x, scale_factor=2, mode="nearest"))
        out = upsample_conv3x3(x, conv.weight, conv.bias)
        assert out.shape == ref.shape and torch.allclose(out, ref, atol=1e-12)
        assert out.is_contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)
        cot = torch.randn(ref.shape, generator=g, dtype=torch.float64)
        params = [x, conv.weight] + ([conv.bias] if bias else [])
        for a, b in zip(torch.autograd.grad(out, params, cot), torch.autograd.grad(ref, params, cot)):
            assert torch.allclose(a, b, atol=1e-12)


def test_bilinear_upsampling_block_is_upsample_then_conv():
    from qmedgen.models.mediqgan import UpBlock

    torch.manual_seed(0)
    block = UpBlock(5, 6, upsample="bilinear")
    x = torch.randn(2, 5, 7, 7)
    up = torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    lrelu = torch.nn.functional.leaky_relu
    expected = lrelu(block.conv2(lrelu(block.conv1(up), 0.2)), 0.2) + block.shortcut(up)
    torch.testing.assert_close(block(x), expected)
    _, g = tiny(28, decoder_upsample="bilinear")
    assert all(b.upsample == "bilinear" for b in g.decoder.blocks)
    _, paper = tiny(28)
    assert all(b.upsample == "nearest" for b in paper.decoder.blocks)  # the authors' code stays the default


@pytest.mark.parametrize("channels_last", [False, True])
def test_skip_injection_equals_upsample_then_project(channels_last):
    """The skip path projects at 4x4 and upsamples after: the same function as upsample-then-1x1-conv."""
    from qmedgen.models.mediqgan import PrototypeSkips

    torch.manual_seed(0)
    skips = PrototypeSkips(code_dim=6, stage_channels=(8, 5), map_channels=4, init_scale=0.3)
    layout = skips.maps(torch.randn(3, 6))
    for stage, (c, size) in enumerate([(8, 16), (5, 28)]):
        h = torch.randn(3, c, size, size)
        if channels_last:
            h = h.contiguous(memory_format=torch.channels_last)
        up = torch.nn.functional.interpolate(layout, size=(size, size), mode="bilinear", align_corners=False)
        expected = h + skips.scales[stage] * skips.proj[stage](up)
        out = skips.inject(layout, stage, h)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
        assert out.is_contiguous(memory_format=torch.channels_last) == channels_last
