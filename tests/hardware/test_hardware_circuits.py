import numpy as np
import pytest
import torch

from qmedgen.analysis.ansatz import preset_ansatz
from qmedgen.errors import ConfigError
from qmedgen.hardware.backends import FAKE_BACKENDS, circuit_stats, compact_circuit, fake_backend, transpile_for
from qmedgen.hardware.circuits import build_circuit, pauli_observables
from qmedgen.quantum import expval, simulate

qiskit = pytest.importorskip("qiskit")
from qiskit.quantum_info import Statevector  # noqa: E402


def _qiskit_state_in_our_order(circuit, n):
    sv = Statevector(circuit).data
    return sv.reshape([2] * n).transpose(list(range(n))[::-1]).reshape(-1)


@pytest.mark.parametrize("preset", ["mediqgan", "qdiffusion"])
def test_circuit_reproduces_simulator_state_and_readout(preset):
    a = preset_ansatz(preset, 3, 2)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, generator=g, dtype=torch.float64) * 6
    w = torch.rand(*a.weight_shape, generator=g, dtype=torch.float64) * 6
    pc = build_circuit(a, measure=False)
    values = pc.binding_array(x[None].numpy(), w[None].numpy())[0]
    ours = simulate(a, x, w).numpy()
    theirs = _qiskit_state_in_our_order(pc.circuit.assign_parameters(values), 3)
    assert abs(np.vdot(theirs, ours)) == pytest.approx(1.0, abs=1e-10)
    # readout observables: <P_i> from the qiskit state equals our expval
    sv = Statevector(pc.circuit.assign_parameters(values))
    evs = [sv.expectation_value(op).real for op in pauli_observables(a)]
    np.testing.assert_allclose(evs, expval(a, x, w).numpy(), atol=1e-10)


def test_bound_weights_leave_only_inputs_free():
    a = preset_ansatz("mediqgan", 3, 1)
    w = torch.rand(a.weight_shape, dtype=torch.float64)
    pc = build_circuit(a, weights=w)
    assert {p.name for p in pc.circuit.parameters} == {"x[0]", "x[1]", "x[2]"}
    x = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)
    bound = pc.circuit.assign_parameters(pc.binding_array(x[None].numpy())[0])
    bound.remove_final_measurements()
    # the measured circuit has the X-basis change; compare probabilities of all-|+> etc. via our sampler basis
    probs = Statevector(bound).probabilities()  # little-endian over wires
    ours = expval(a, x, w).numpy()
    n = 3
    for i in range(n):
        p1 = sum(p for k, p in enumerate(probs) if (k >> i) & 1)
        assert 1 - 2 * p1 == pytest.approx(ours[i], abs=1e-10)


def test_transpiled_for_marrakesh_uses_device_basis():
    a = preset_ansatz("mediqgan", 4, 2)
    isa = transpile_for(build_circuit(a).circuit, fake_backend("fake_marrakesh"))
    stats = circuit_stats(isa)
    assert stats["active_qubits"] == 4
    assert stats["two_qubit_gates"] >= 6  # 3 CZ per layer on a line
    assert set(stats["ops"]) <= {"rz", "sx", "x", "cz", "measure", "barrier"}
    small, active = compact_circuit(isa)
    assert small.num_qubits == 4 and active == stats["physical_qubits"]


def test_fake_backend_names():
    provider = pytest.importorskip("qiskit_ibm_runtime.fake_provider")
    for key in ("fake_marrakesh", "fake_brisbane", "fake_torino"):
        assert hasattr(provider, FAKE_BACKENDS[key])
    assert fake_backend("fake_manila").num_qubits == 5  # any fake_provider device by name
    with pytest.raises(ConfigError, match="unknown fake backend"):
        fake_backend("fake_nowhere")
