"""IBM device models: offline fake backends (``fake_<name>``) and real devices (``ibm_<name>``) by name.

Fake backends come from ``qiskit_ibm_runtime.fake_provider`` and carry a snapshot of the device's coupling map,
basis gates and calibrated error rates, from which Aer builds a noise model. ``ibm_<name>`` needs a saved IBM
Quantum account (``QiskitRuntimeService.save_account(...)``); nothing here ever reaches the network otherwise.
"""

from __future__ import annotations

import warnings

from qmedgen.errors import ConfigError, UserError
from qmedgen.hardware._qiskit import require

#: name -> class in qiskit_ibm_runtime.fake_provider. fake_marrakesh is the device of the MediQ-GAN paper.
FAKE_BACKENDS = {
    "fake_marrakesh": "FakeMarrakesh",  # Heron r2, 156 qubits, CZ
    "fake_fez": "FakeFez",  # Heron r2, 156 qubits, CZ
    "fake_torino": "FakeTorino",  # Heron r1, 133 qubits, CZ
    "fake_brisbane": "FakeBrisbane",  # Eagle r3, 127 qubits, ECR
    "fake_sherbrooke": "FakeSherbrooke",  # Eagle r3, 127 qubits, ECR
    "fake_kyiv": "FakeKyiv",  # Eagle r3, 127 qubits, ECR
}


class AccountError(UserError):
    """No usable IBM Quantum account is saved on this machine."""


def is_fake(name: str) -> bool:
    return name.lower().startswith("fake_")


def is_ibm(name: str) -> bool:
    return name.lower().startswith("ibm_")


def fake_backend(name: str):
    """An offline fake IBM backend by name: ``fake_marrakesh``, ``fake_brisbane``, ... or any other class of
    ``qiskit_ibm_runtime.fake_provider`` as ``fake_<device>`` (``fake_manila`` -> FakeManilaV2)."""
    key = name.lower()
    if not key.startswith("fake_"):
        raise ConfigError(f"fake backend names start with 'fake_', got {name!r}")
    provider = require("qiskit_ibm_runtime.fake_provider", "fake IBM backends")
    stem = "Fake" + key[len("fake_") :].replace("_", "").capitalize()
    candidates = [FAKE_BACKENDS.get(key), stem + "V2", stem]
    for cls_name in candidates:
        cls = getattr(provider, cls_name, None) if cls_name else None
        if cls is not None:
            return cls()
    raise ConfigError(
        f"unknown fake backend {name!r}; recommended: {sorted(FAKE_BACKENDS)} "
        "(any qiskit_ibm_runtime.fake_provider device works as fake_<device>; ibm_<device> for real hardware)"
    )


def runtime_service(**kwargs):
    """``QiskitRuntimeService`` from the saved account, or an :class:`AccountError` that says how to save one."""
    runtime = require("qiskit_ibm_runtime", "running on IBM Quantum devices")
    from qiskit_ibm_runtime.accounts import AccountNotFoundError, InvalidAccountError

    try:
        return runtime.QiskitRuntimeService(**kwargs)
    except (AccountNotFoundError, InvalidAccountError) as exc:
        raise AccountError(
            f"no usable IBM Quantum account is configured ({exc}). Save one once with: python -c "
            "\"from qiskit_ibm_runtime import QiskitRuntimeService; QiskitRuntimeService.save_account("
            "channel='ibm_quantum_platform', token='<API key>', instance='<CRN>', set_as_default=True)\", "
            "or use an offline device model such as --backend fake_marrakesh"
        ) from exc


def get_backend(name: str, service=None):
    """A backend by name: ``fake_*`` offline, ``ibm_*`` through the saved account (or ``service``)."""
    if is_fake(name):
        return fake_backend(name)
    if is_ibm(name):
        service = service or runtime_service()
        try:
            return service.backend(name)
        except Exception as exc:  # the runtime raises its own QiskitBackendNotFoundError
            raise ConfigError(f"IBM backend {name!r} is not available to this account: {exc}") from exc
    raise ConfigError(f"unknown backend {name!r}; expected ibm_<device> or one of {sorted(FAKE_BACKENDS)}")


def transpile_for(circuit, backend, optimization_level: int = 3, seed: int = 0):
    """The circuit rewritten for the device's basis gates and coupling map (an ISA circuit)."""
    require("qiskit")
    from qiskit.transpiler import generate_preset_pass_manager

    pm = generate_preset_pass_manager(optimization_level=optimization_level, backend=backend, seed_transpiler=seed)
    return pm.run(circuit)


def compact_circuit(circuit):
    """The ISA circuit restricted to its active physical qubits (relabelled 0..k-1), plus their indices.

    Simulators then carry a k-qubit circuit and a k-qubit noise model instead of the whole 127/156-qubit device.
    """
    qiskit = require("qiskit")
    active = sorted({circuit.find_bit(q).index for inst in circuit.data for q in inst.qubits})
    index = {p: i for i, p in enumerate(active)}
    out = qiskit.QuantumCircuit(qiskit.QuantumRegister(len(active), "q"), *circuit.cregs, name=circuit.name)
    for inst in circuit.data:
        qubits = [out.qubits[index[circuit.find_bit(q).index]] for q in inst.qubits]
        out.append(inst.operation, qubits, list(inst.clbits))
    return out, active


_NOISE_DICTS: dict[int, dict] = {}


def _noise_dict(noise_model) -> dict:
    """``noise_model.to_dict()`` (seconds for a whole device), cached per model object."""
    key = id(noise_model)
    if key not in _NOISE_DICTS:
        _NOISE_DICTS[key] = noise_model.to_dict()
    return _NOISE_DICTS[key]


def compact_noise_model(noise_model, physical_qubits: list[int]):
    """The errors of ``noise_model`` that act only on ``physical_qubits``, relabelled to 0..k-1."""
    require("qiskit_aer", "noisy Aer simulation")
    from qiskit_aer.noise import NoiseModel

    index = {p: i for i, p in enumerate(physical_qubits)}
    errors = []
    for err in _noise_dict(noise_model)["errors"]:
        kept = [tuple(index[q] for q in qs) for qs in err.get("gate_qubits", []) if all(q in index for q in qs)]
        if kept:
            errors.append({**err, "gate_qubits": kept})
    with warnings.catch_warnings():  # from_dict is deprecated in qiskit-aer >= 0.15 but still the only public way
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return NoiseModel.from_dict({"errors": errors})
        except AttributeError:  # removed in a future qiskit-aer: simulate with the whole-device model instead
            return None


def circuit_stats(circuit) -> dict:
    """Depth, gate counts and two-qubit-gate count/depth of a (transpiled) circuit."""
    ops = dict(circuit.count_ops())
    two_q = sum(1 for inst in circuit.data if inst.operation.num_qubits == 2)
    active = sorted({circuit.find_bit(q).index for inst in circuit.data for q in inst.qubits})
    depth_2q = circuit.depth(lambda inst: inst.operation.num_qubits == 2)
    return {
        "depth": circuit.depth(),
        "two_qubit_gates": two_q,
        "two_qubit_depth": depth_2q,
        "size": circuit.size(),
        "ops": {k: int(v) for k, v in ops.items()},
        "active_qubits": len(active),
        "physical_qubits": active,
    }
