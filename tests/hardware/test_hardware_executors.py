import pytest
import torch

from qmedgen.errors import ConfigError
from qmedgen.hardware.backends import AccountError, fake_backend, get_backend
from qmedgen.hardware.executors import (
    AerExecutor,
    ExactExecutor,
    RecordingExecutor,
    RuntimeExecutor,
    ShotsExecutor,
    use_executor,
)
from qmedgen.quantum import Ansatz, expval

pytest.importorskip("qiskit_aer")

ANSATZ = Ansatz(3, 2, encoding="ry-rx", rotations=("ry",), entangler="cz-chain", observable="x")


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 2, 3, generator=g) * 6  # [B, K, n]
    w = torch.rand(2, *ANSATZ.weight_shape, generator=g) * 6  # [K, L, R, n]
    return x, w


def test_use_executor_swaps_and_restores(tiny_trainer):
    layer = tiny_trainer.generator.circuits
    calls = []

    def spy(ansatz, inputs, weights, shots=None, generator=None):
        calls.append(inputs.shape)
        return expval(ansatz, inputs, weights)

    with use_executor(tiny_trainer, spy):
        assert layer.executor is spy
        tiny_trainer.sample(torch.tensor([0, 1]))
    assert layer.executor is None
    assert calls and tuple(calls[0]) == (2, 2, 3)
    with pytest.raises(ConfigError, match="no QuantumLayer"), use_executor(torch.nn.Linear(2, 2), spy):
        pass


def test_shots_executor_estimates_and_exact_executor():
    x, w = _data()
    exact = expval(ANSATZ, x, w)
    assert torch.allclose(ExactExecutor()(ANSATZ, x, w, shots=8), exact)
    est = ShotsExecutor(4000, seed=1)(ANSATZ, x, w)
    assert est.shape == exact.shape
    assert (est - exact).abs().max() < 0.08  # ~5 sigma of 1/sqrt(4000)
    assert not torch.equal(est, exact)


def test_aer_executor_is_one_job_with_all_bindings():
    x, w = _data()
    exact = expval(ANSATZ, x, w)
    ideal = AerExecutor(fake_backend("fake_manila"), shots=4000, seed=3, noise=False)
    out = ideal(ANSATZ, x, w)
    assert out.shape == (4, 2, 3) and out.dtype == x.dtype
    assert ideal.n_jobs == 1 and ideal.n_bindings == 8
    assert (out - exact).abs().max() < 0.08
    noisy = AerExecutor(fake_backend("fake_manila"), shots=4000, seed=3)
    err = RecordingExecutor(noisy)
    out_noisy = err(ANSATZ, x, w)
    assert (out_noisy - exact).abs().max() < 0.35
    assert err.summary()["expval_rmse"] > 0
    stats = noisy.stats(ANSATZ)
    assert stats["two_qubit_gates"] >= 4


def test_trajectory_sampling_matches_per_shot_sampling():
    x, w = _data()
    x = x[:2]
    backend = fake_backend("fake_manila")
    per_shot = AerExecutor(backend, shots=8000, seed=1, trajectories="auto")
    assert per_shot.n_trajectories(ANSATZ) is None  # few qubits: one trajectory per shot
    traj = AerExecutor(backend, shots=8000, seed=1, trajectories=100)
    a, b = per_shot(ANSATZ, x, w), traj(ANSATZ, x, w)
    assert (a - b).abs().max() < 0.06  # same noisy statistics (shot noise ~0.011 each)
    ideal = AerExecutor(backend, shots=8000, seed=1, trajectories=10, noise=False)
    assert (ideal(ANSATZ, x, w) - expval(ANSATZ, x, w)).abs().max() < 0.06
    with pytest.raises(ConfigError, match="trajectories"):
        AerExecutor(backend, shots=10, trajectories=20)


@pytest.mark.parametrize("primitive,execution", [("sampler", "batch"), ("estimator", "session")])
def test_runtime_primitives_in_local_testing_mode(primitive, execution):
    x, w = _data()
    x = x[:2]
    ex = RuntimeExecutor(fake_backend("fake_manila"), shots=2000, primitive=primitive, execution=execution)
    out = ex(ANSATZ, x, w)
    ex.close()
    assert out.shape == (2, 2, 3)
    assert len(ex.job_ids) == 1
    assert (out - expval(ANSATZ, x, w)).abs().max() < 0.35


def test_missing_account_gives_clear_error(monkeypatch, tmp_path):
    management = pytest.importorskip("qiskit_ibm_runtime.accounts.management")
    monkeypatch.setattr(management, "_DEFAULT_ACCOUNT_CONFIG_JSON_FILE", str(tmp_path / "none.json"))
    for var in ("QISKIT_IBM_TOKEN", "QISKIT_IBM_URL", "QISKIT_IBM_INSTANCE", "QISKIT_IBM_CHANNEL"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(AccountError, match="save_account"):
        get_backend("ibm_marrakesh")
    with pytest.raises(ConfigError, match="unknown backend"):
        get_backend("marrakesh")


def test_missing_extra_names_quantum_extra(monkeypatch):
    import importlib

    from qmedgen.hardware import _qiskit

    real = importlib.import_module

    def fake_import(name, *a, **k):
        if name.startswith("qiskit"):
            raise ImportError(f"No module named {name!r}")
        return real(name, *a, **k)

    monkeypatch.setattr(_qiskit.importlib, "import_module", fake_import)
    with pytest.raises(_qiskit.MissingExtraError, match=r"qmedgen\[quantum\]"):
        _qiskit.require("qiskit_aer", "noisy simulation")
