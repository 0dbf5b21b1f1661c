"""The fast engine against the slow reference (autograd) and finite differences; shapes, dtypes, modes."""

from __future__ import annotations

import pytest
import torch

from qmedgen.errors import ConfigError
from qmedgen.quantum import Ansatz, engine, expval, probabilities, simulate
from qmedgen.quantum import _reference as ref
from qmedgen.quantum.compiled import compile_circuit
from qmedgen.quantum.engine import block_sizes, cnot_permutation

from ._circuits import grads, random_params

MEDIQ = dict(encoding="ry-rx", rotations=("ry",), entangler="cz-chain", observable="x")  # stacked real mode
DIFFUSION = dict(encoding="ry", rotations=("rz", "ry"), entangler="cnot-chain", observable="z")  # complex mode
REAL = dict(encoding="ry", rotations=("ry",), entangler="cnot-ring", observable="z")  # fully real mode
YOBS = dict(encoding="rx", rotations=("rx", "rz"), entangler="cz-chain", observable="y")


def _assert_matches_reference(a: Ansatz, x: torch.Tensor, w: torch.Tensor) -> None:
    """Values, gradients (random cotangent), final states and probabilities equal the gate-by-gate reference's."""
    cot = torch.randn(x.shape[0], a.n_qubits, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ours, theirs = expval(a, x, w), ref.expval(a, x, w)
    assert torch.allclose(ours, theirs, atol=1e-10)
    for g, r in zip(grads(ours, (x, w), cot), grads(theirs, (x, w), cot)):
        assert torch.allclose(g, r, atol=1e-10)
    assert torch.allclose(simulate(a, x, w), ref.simulate(a, x, w), atol=1e-10)
    assert torch.allclose(probabilities(a, x, w), ref.probabilities(a, x, w), atol=1e-10)


@pytest.mark.parametrize("opts", [MEDIQ, DIFFUSION, REAL, YOBS], ids=["mediq", "diffusion", "real", "y"])
@pytest.mark.parametrize("n", [1, 2, 5, 7, 9])  # 5, 7, 9 qubits: several Kronecker blocks of unequal sizes
def test_adjoint_matches_autograd_reference(opts, n):
    a = Ansatz(n, 3, **opts)
    _assert_matches_reference(a, *random_params(a, batch=(2,), seed=n))


@pytest.mark.parametrize("opts", [MEDIQ, YOBS, DIFFUSION], ids=["mediq", "y", "diffusion"])
@pytest.mark.parametrize("folds", [0, 1, 2, 3, 6])
@pytest.mark.parametrize("n", [5, 10])
def test_folded_entangler_layers_match_the_reference(opts, folds, n, monkeypatch):
    """The first CZ / CNOT chains + block layers folded into the initial state (a bond-2**folds chain of block
    tensors), followed by ordinary block layers, or by none when every layer is folded: same values, gradients and
    state as the gate-by-gate reference."""
    a = Ansatz(n, 4, **opts)
    x, w = random_params(a, batch=(3,), seed=folds)
    monkeypatch.setattr(engine, "ENTANGLER_FOLDS", 0)
    total = compile_circuit(a, x, w).plan.n_layers  # rotation layers 2-4, and the basis change for X / Y readout
    monkeypatch.setattr(engine, "ENTANGLER_FOLDS", folds)
    prep = compile_circuit(a, x, w)
    assert prep.plan.n_layers == len(prep.mats) // len(prep.plan.blocks) == total - min(folds, total)
    inner = [t.shape[1] for t in prep.sites[1:]]
    assert inner == [2 ** min(folds, total)] * (len(prep.plan.blocks) - 1)
    _assert_matches_reference(a, x, w)


@pytest.mark.parametrize("which", ["inputs", "weights"])
def test_gradient_when_only_one_argument_requires_grad(which):
    a = Ansatz(5, 3, **MEDIQ)
    x, w = random_params(a, batch=(3,), requires_grad=False)
    p = x if which == "inputs" else w
    p.requires_grad_(True)
    cot = torch.randn(3, 5, dtype=torch.float64)
    (g,) = grads(expval(a, x, w), [p], cot)
    (r,) = grads(ref.expval(a, x, w), [p], cot)
    assert torch.allclose(g, r, atol=1e-10)


@pytest.mark.parametrize("opts", [MEDIQ, DIFFUSION], ids=["mediq", "diffusion"])
def test_gradcheck_finite_differences(opts):
    a = Ansatz(3, 2, **opts)
    x, w = random_params(a, batch=(2,))
    assert torch.autograd.gradcheck(lambda x, w: expval(a, x, w), (x, w), eps=1e-6, atol=1e-7)


def test_broadcasting_subgenerators_and_shared_weights():
    a = Ansatz(4, 2, **MEDIQ)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)  # B=6 samples, K=3 circuits
    w = torch.rand(3, *a.weight_shape, generator=g, dtype=torch.float64, requires_grad=True)
    out = expval(a, x, w)
    assert out.shape == (6, 3, 4)
    loop = torch.stack([torch.stack([expval(a, x[b, k], w[k]) for k in range(3)]) for b in range(6)])
    assert torch.allclose(out, loop, atol=1e-12)
    cot = torch.randn(6, 3, 4, dtype=torch.float64)
    for gg, r in zip(grads(out, (x, w), cot), grads(loop, (x, w), cot)):
        assert torch.allclose(gg, r, atol=1e-10)
    # one shared weight set, many inputs; and many weight sets, one input
    assert expval(a, x[:, 0], w[0]).shape == (6, 4)
    assert expval(a, x[0, 0], w).shape == (3, 4)
    assert expval(a, x[0, 0], w[0]).shape == (4,)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_follows_inputs(dtype):
    a = Ansatz(3, 1, **DIFFUSION)
    x, w = random_params(a, dtype=dtype)
    assert expval(a, x, w).dtype == dtype
    assert expval(a, x.detach().double(), w.detach().float()).dtype == torch.float64
    assert expval(a, x.detach().half().float(), w.detach().float()).dtype == torch.float32


def test_integer_inputs_are_promoted_to_float():
    a = Ansatz(2, 1, **REAL)
    assert expval(a, torch.zeros(2, dtype=torch.long), torch.zeros(1, 1, 2)).dtype == torch.float32


def test_no_grad_and_depth_zero():
    a = Ansatz(3, 0, encoding="rx", rotations=("ry",), entangler="cz-chain", observable="z")
    x, w = random_params(a, batch=(2,))
    with torch.no_grad():
        out = expval(a, x, w)
    assert torch.allclose(out, torch.cos(x), atol=1e-12)  # <Z> after RX(x)|0> is cos(x)


def test_repeated_backward_and_jacobian():
    a = Ansatz(3, 2, **MEDIQ)
    x, w = random_params(a)
    out = expval(a, x, w)
    out.sum().backward(retain_graph=True)  # the second pass recomputes the state the first one recycled
    first = x.grad.clone()
    out.sum().backward()
    assert torch.allclose(x.grad, 2 * first, atol=1e-12)
    jac = torch.autograd.functional.jacobian(lambda v: expval(a, v, w.detach()), x.detach())
    ref_jac = torch.autograd.functional.jacobian(lambda v: ref.expval(a, v, w.detach()), x.detach())
    assert torch.allclose(jac, ref_jac, atol=1e-10)


def test_bad_shapes_raise_config_errors():
    a = Ansatz(3, 2, **MEDIQ)
    with pytest.raises(ConfigError, match=r"inputs must have shape \[\.\.\., 3\]"):
        expval(a, torch.zeros(4), torch.zeros(2, 1, 3))
    with pytest.raises(ConfigError, match="weights must have shape"):
        expval(a, torch.zeros(3), torch.zeros(2, 3))
    with pytest.raises(ConfigError, match="do not broadcast"):
        expval(a, torch.zeros(4, 3), torch.zeros(5, 2, 1, 3))
    with pytest.raises(ConfigError, match="expected an Ansatz"):
        expval("not an ansatz", torch.zeros(3), torch.zeros(2, 1, 3))


def test_block_sizes_and_cnot_permutation_is_the_gate_sequence():
    assert block_sizes(16) == (4, 4, 4, 4)
    assert block_sizes(18) == (4, 4, 4, 3, 3)
    assert sum(block_sizes(23)) == 23
    fwd, inv = cnot_permutation(3, False, torch.device("cpu"))
    # |100> -> CNOT(0,1) -> |110> -> CNOT(1,2) -> |111>: new[7] = old[4]
    assert fwd[7].item() == 4 and inv[4].item() == 7
    assert torch.equal(fwd[inv], torch.arange(8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    a = Ansatz(6, 3, **MEDIQ)
    x, w = random_params(a, batch=(4,))
    cpu = expval(a, x, w)
    xc, wc = x.detach().cuda().requires_grad_(), w.detach().cuda().requires_grad_()
    gpu = expval(a, xc, wc)
    assert gpu.device.type == "cuda"
    assert torch.allclose(gpu.cpu(), cpu, atol=1e-10)
    cot = torch.randn(4, 6, dtype=torch.float64)
    for g, r in zip(grads(gpu, (xc, wc), cot.cuda()), grads(cpu, (x, w), cot)):
        assert torch.allclose(g.cpu(), r, atol=1e-10)


def test_empty_batch_gives_empty_results_and_zero_gradients():
    a = Ansatz(5, 2, **MEDIQ)
    x = torch.rand(0, 5, requires_grad=True)
    w = torch.rand(*a.weight_shape, requires_grad=True)
    out = expval(a, x, w)
    assert out.shape == (0, 5)
    out.sum().backward()
    assert x.grad.shape == (0, 5) and torch.equal(w.grad, torch.zeros_like(w))
    assert probabilities(a, x, w).shape == (0, 32)


def test_simulate_is_differentiable_by_autograd():
    a = Ansatz(5, 2, **DIFFUSION)
    x, w = random_params(a, batch=(2,))
    probe = torch.randn(2, 32, dtype=torch.complex128, generator=torch.Generator().manual_seed(0))
    ours = (simulate(a, x, w) * probe).real.sum()
    theirs = (ref.simulate(a, x, w) * probe).real.sum()
    for g, r in zip(torch.autograd.grad(ours, (x, w)), torch.autograd.grad(theirs, (x, w))):
        assert torch.allclose(g, r, atol=1e-10)


@pytest.mark.parametrize("opts", [MEDIQ, DIFFUSION], ids=["mediq", "diffusion"])
def test_double_backward_gives_jacobian_vector_products(opts):
    # d/du <J^T u, t> = J t: the trick Jacobian-spectrum analyses use for jvps; needs create_graph=True
    a = Ansatz(4, 2, **opts)
    x, w = random_params(a, batch=(3,))
    t = torch.randn_like(x)

    def jvp(fn):
        y = fn(a, x, w)
        u = torch.zeros_like(y, requires_grad=True)
        (gx,) = torch.autograd.grad(y, x, u, create_graph=True)
        (jt,) = torch.autograd.grad(gx, u, t)
        return jt

    assert torch.allclose(jvp(expval), jvp(ref.expval), atol=1e-10)
    assert torch.autograd.gradgradcheck(lambda x, w: expval(a, x, w), (x[:1], w), eps=1e-6, atol=1e-6)


def test_autocast_regions_keep_circuits_in_full_precision():
    a = Ansatz(5, 2, **MEDIQ)
    x = torch.rand(3, 5, requires_grad=True)
    w = torch.rand(*a.weight_shape, requires_grad=True)
    exact = expval(a, x, w)
    (g_exact,) = torch.autograd.grad(exact.sum(), x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = expval(a, x, w)
        (g,) = torch.autograd.grad(out.sum(), x)
    assert out.dtype == torch.float32
    assert torch.allclose(out, exact, atol=1e-6) and torch.allclose(g, g_exact, atol=1e-6)


@pytest.mark.parametrize("opts", [MEDIQ, DIFFUSION, REAL, YOBS], ids=["mediq", "diffusion", "real", "y"])
@pytest.mark.parametrize("which", ["both", "inputs", "weights"])
def test_backward_without_stored_states_matches_reference(opts, which, monkeypatch):
    """Above the storage budget the backward un-applies every block from the final state instead of reading the
    block inputs the forward kept: the two paths must give the same gradients."""
    from qmedgen.quantum import engine

    monkeypatch.setattr(engine, "STORE_MAX_BYTES", 0)
    a = Ansatz(6, 3, **opts)
    x, w = random_params(a, batch=(3,), seed=4, requires_grad=False)
    params = {"both": [x, w], "inputs": [x], "weights": [w]}[which]
    for p in params:
        p.requires_grad_(True)
    cot = torch.randn(3, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    for g, r in zip(grads(expval(a, x, w), params, cot), grads(ref.expval(a, x, w), params, cot)):
        assert torch.allclose(g, r, atol=1e-10)


def test_pooled_buffers_give_identical_repeated_results():
    """16 qubits x 8 circuits: state buffers large enough to be pooled between calls; reusing them must not change
    values or gradients (e.g. a buffer handed back while still in use would)."""
    from qmedgen.quantum import workspace

    a = Ansatz(16, 2, **MEDIQ)
    x, w = random_params(a, batch=(8,), seed=3, dtype=torch.float32)
    workspace.clear()
    first = [expval(a, x, w)]
    first += list(torch.autograd.grad(first[0].sum(), (x, w)))
    assert workspace.held_bytes() > 0
    xd, wd = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    exact = ref.expval(a, xd, wd)  # the slow gate-by-gate simulator: no buffers shared with the engine
    for f, r in zip(first, [exact, *torch.autograd.grad(exact.sum(), (xd, wd))]):
        assert torch.allclose(f.double(), r, atol=1e-4)
    for _ in range(2):
        out = expval(a, x, w)
        again = [out, *torch.autograd.grad(out.sum(), (x, w))]
        for f, s in zip(first, again):
            assert torch.equal(f, s)
    workspace.clear()
    assert workspace.held_bytes() == 0


@pytest.mark.parametrize("store", [True, False], ids=["stored", "unapplied"])
def test_backward_gives_its_buffers_back_when_it_fails(store, monkeypatch):
    """An error inside the adjoint backward (here: in a block gradient) must not strand the chunk's state buffers:
    the final state, the stored block inputs, lambda and the spares go back to the workspace, and later calls work."""
    from qmedgen.quantum import workspace

    if not store:
        monkeypatch.setattr(engine, "STORE_MAX_BYTES", 0)
    monkeypatch.setattr(engine.torch, "get_num_threads", lambda: 1)  # one chunk of 4 circuits (2 MiB per state)
    a = Ansatz(16, 6, **MEDIQ)
    x, w = random_params(a, batch=(4,), seed=3, dtype=torch.float32)
    plan = compile_circuit(a, x, w).plan
    assert plan.n_layers > 1  # block layers left after the folds (the last one, the <X> basis change, is constant)
    state = 2 * 4 * 2**16 * 4  # stacked re/im rows x circuits x amplitudes x float32
    workspace.clear()
    out = expval(a, x, w)
    workspace.clear()  # only what the failing backward hands back is counted

    def fail(*args, **kwargs):
        raise RuntimeError("boom")

    with monkeypatch.context() as m:
        m.setattr(engine, "_block_grad", fail)
        with pytest.raises(RuntimeError, match="boom"):
            torch.autograd.grad(out.sum(), (x, w))
    # final state, lambda and its spare; and every block input the forward kept, or psi's spare
    assert workspace.held_bytes() == (3 + (plan.n_layers * len(plan.blocks) if store else 1)) * state
    again = expval(a, x, w)
    assert torch.equal(again, out.detach())
    assert all(g is not None for g in torch.autograd.grad(again.sum(), (x, w)))
    workspace.clear()


@pytest.mark.parametrize("opts", [MEDIQ, DIFFUSION, REAL], ids=["mediq", "diffusion", "real"])
@pytest.mark.parametrize("store", [True, False], ids=["stored", "unapplied"])
@pytest.mark.parametrize("shared", [True, False], ids=["shared-weights", "per-circuit-weights"])
def test_chunked_circuits_match_reference(opts, store, shared, monkeypatch):
    """A tiny chunk budget splits 7 circuits into chunks of 2 (the last one shorter): values, probabilities and
    gradients, broadcast weights summed over chunks, a second backward and a Jacobian must all be unchanged."""
    from qmedgen.quantum import engine

    mode = "real" if opts is REAL else ("stacked" if opts is MEDIQ else "complex")
    monkeypatch.setattr(engine, "CHUNK_BYTES", 2 * 2**5 * 8 * (1 if mode == "real" else 2))  # 2 float64 circuits
    monkeypatch.setattr(engine.torch, "get_num_threads", lambda: 1)  # (the chunk budget is per thread)
    if not store:
        monkeypatch.setattr(engine, "STORE_MAX_BYTES", 0)
    a = Ansatz(5, 3, **opts)
    x, w = random_params(a, batch=(7,), seed=6)
    assert engine.chunk_spans(engine.Plan(5, (5,), "none", 1, False, mode, 7), x) == [(0, 2), (2, 4), (4, 6), (6, 7)]
    if shared:
        w = w[0].detach().requires_grad_()
    cot = torch.randn(7, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    out = expval(a, x, w)
    exact = ref.expval(a, x, w)
    assert torch.allclose(out, exact, atol=1e-12)
    for g, r in zip(grads(out, [x, w], cot), grads(exact, [x, w], cot)):
        assert torch.allclose(g, r, atol=1e-10)
    assert torch.allclose(probabilities(a, x, w), ref.probabilities(a, x, w), atol=1e-12)
    out = expval(a, x, w)
    out.sum().backward(retain_graph=True)
    first = w.grad.clone()
    out.sum().backward()  # the second pass recomputes the chunks' states
    assert torch.allclose(w.grad, 2 * first, atol=1e-12)
    jac = torch.autograd.functional.jacobian(lambda v: expval(a, x.detach(), v), w.detach())
    ref_jac = torch.autograd.functional.jacobian(lambda v: ref.expval(a, x.detach(), v), w.detach())
    assert torch.allclose(jac, ref_jac, atol=1e-10)
    out = expval(a, x, w)
    monkeypatch.setattr(engine.torch, "get_num_threads", lambda: 3)  # the thread count changes before backward
    for g, r in zip(grads(out, [x, w], cot), grads(ref.expval(a, x, w), [x, w], cot)):
        assert torch.allclose(g, r, atol=1e-10)
