"""Engine benchmark: forward + backward of qmedgen's simulator vs PennyLane, side by side in one run.

Baselines (the issue's definitions):
  (a) the reference method: one PennyLane ``lightning.qubit`` QNode with ``diff_method="adjoint"`` per sample and
      per sub-generator (what the MediQ-GAN and quantum-diffusion code do). It is slow, so a few circuits are
      timed and the per-circuit cost is extrapolated linearly to the whole batch (printed as such).
  (b) PennyLane ``default.qubit`` with parameter broadcasting (one QNode call per sub-generator for the whole
      batch, torch backprop). Backprop keeps every intermediate state, so it is timed on at most ``--b-batch``
      samples and extrapolated linearly in the batch size (also printed).
  (c) TorchQuantum (MIT HAN lab, PyPI ``torchquantum``), the peer batched torch state-vector simulator: the same
      gates with its functional API (``tq.QuantumDevice(n_wires, bsz)`` holding one circuit per sample and
      sub-generator, ``torchquantum.functional`` rotations / cz / cnot with per-circuit angles, readout with
      ``torchquantum.measurement.expval``), torch autograd backward, on the same device as qmedgen. Like (b) it keeps
      every intermediate state for backprop (about 0.1 GiB per 16-qubit circuit), so it is timed on ``--c-circuits``
      circuits (median of the repeats after a warm-up) and extrapolated linearly to the batch. Its <P_i> and the
      gradients w.r.t. inputs and weights are checked against qmedgen on those circuits (max abs diff, fp32) and
      printed. Optional: without an importable ``torchquantum`` (not a dependency of qmedgen; its 0.1.8 release pins
      qiskit<1, so it lives in a throwaway environment, see RESULTS.md) (c) is skipped with a one-line message.
Cases: MediQ-GAN (16 qubits, depth 8, 5 sub-generators with their own weights, ry-rx / ry / cz-chain / <X>, batch
10 and 64) and the diffusion bottleneck (16 qubits, 3 layers, ry / (rz, ry) / cnot-chain / <Z>, one shared weight
set, batch 64). Timings are the median of ``--repeats`` after one warm-up. Results are appended to
benchmarks/RESULTS.md with date, machine, versions and the load average (``contended`` when the machine is busy).

    python benchmarks/bench_engine.py            # full run (several minutes on 2 cores, mostly baseline (a))
    python benchmarks/bench_engine.py --quick    # smaller baseline samples
    python benchmarks/bench_engine.py --device cuda
    python benchmarks/bench_engine.py --interleave 3 --a-circuits 10   # spread of the ratio vs (a)
    python benchmarks/bench_engine.py --no-tq    # skip baseline (c); --no-pennylane skips (a) and (b);
                                                 # --no-baselines skips all three
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import os
import platform
import resource
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from qmedgen.quantum import Ansatz, estimate_bytes, expval

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
SECTION = "## Engine (qmedgen.quantum)"


@dataclass
class Case:
    name: str
    ansatz: Ansatz
    batch: int
    k: int  # sub-generators, each with its own weights (1 = one shared weight set)


def cases() -> list[Case]:
    mediq = Ansatz(16, 8, encoding="ry-rx", rotations=("ry",), entangler="cz-chain", observable="x")
    diffusion = Ansatz(16, 3, encoding="ry", rotations=("rz", "ry"), entangler="cnot-chain", observable="z")
    return [
        Case("MediQ-GAN K=5 B=10", mediq, 10, 5),
        Case("MediQ-GAN K=5 B=64", mediq, 64, 5),
        Case("diffusion B=64", diffusion, 64, 1),
    ]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _params(case: Case, device: torch.device, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    a = case.ansatz
    if case.k > 1:
        x = torch.rand(case.batch, case.k, a.n_qubits, generator=g)
        w = torch.rand(case.k, *a.weight_shape, generator=g)
    else:
        x = torch.rand(case.batch, a.n_qubits, generator=g)
        w = torch.rand(*a.weight_shape, generator=g)
    return x.to(device, dtype).requires_grad_(), w.to(device, dtype).requires_grad_()


def time_qmedgen(case: Case, device: torch.device, repeats: int) -> tuple[float, float]:
    """Median wall seconds and median process CPU seconds (steadier on a shared machine) of forward+backward."""
    x, w = _params(case, device)
    times, cpu = [], []
    for r in range(repeats + 1):
        x.grad = w.grad = None
        _sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        out = expval(case.ansatz, x, w)
        out.backward(torch.ones_like(out))
        _sync(device)
        if r:  # the first run warms up caches and allocators
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    return statistics.median(times), statistics.median(cpu)


def time_lightning_per_circuit(case: Case, n_circuits: int) -> float:
    """(a): seconds per circuit (forward + adjoint backward through the torch interface)."""
    import pennylane as qml

    a = case.ansatz
    dev = qml.device("lightning.qubit", wires=a.n_qubits)
    qnode = qml.QNode(a.to_pennylane(), dev, interface="torch", diff_method="adjoint")
    x, w = _params(case, torch.device("cpu"), torch.float64)
    x, w = x.detach(), w.detach()
    xs = x.reshape(-1, a.n_qubits)
    ws = w.reshape(-1, *a.weight_shape)
    times = []
    for i in range(n_circuits + 1):
        xi = xs[i % xs.shape[0]].clone().requires_grad_()
        wi = ws[i % ws.shape[0]].clone().requires_grad_()
        t0 = time.perf_counter()
        out = torch.stack(list(qnode(xi, wi)))
        out.backward(torch.ones_like(out))
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def time_default_broadcast(case: Case, b_batch: int) -> tuple[float, int]:
    """(b): seconds for the whole case, extrapolated from ``b_batch`` samples per sub-generator call."""
    import pennylane as qml

    a = case.ansatz
    dev = qml.device("default.qubit", wires=a.n_qubits)
    qnode = qml.QNode(a.to_pennylane(), dev, interface="torch", diff_method="backprop")
    x, w = _params(case, torch.device("cpu"))
    b = min(b_batch, case.batch)
    x = x.detach()[:b]
    w = w.detach()
    t0 = time.perf_counter()
    for k in range(case.k):
        xk = (x[:, k] if case.k > 1 else x).clone().requires_grad_()
        wk = (w[k] if case.k > 1 else w).clone().requires_grad_()
        out = torch.stack(list(qnode(xk, wk)), dim=-1)
        out.backward(torch.ones_like(out))
    elapsed = time.perf_counter() - t0
    return elapsed * case.batch / b, b


def _tq_expval(tq, tqf, ansatz: Ansatz, inputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(c): <P_i> ``[..., n]`` of the ansatz built gate by gate with TorchQuantum's batched functional API.

    ``inputs [..., n]`` and ``weights [..., L, R, n]`` broadcast as in :func:`qmedgen.quantum.expval`; every
    circuit of the broadcast batch is one state of a single ``QuantumDevice`` (bsz = number of circuits), and each
    gate gets that circuit's own angle (``params`` of shape [bsz, 1]).
    """
    n = ansatz.n_qubits
    lead = torch.broadcast_shapes(inputs.shape[:-1], weights.shape[:-3])
    xs = inputs.expand(*lead, n).reshape(-1, n)
    ws = weights.expand(*lead, *ansatz.weight_shape).reshape(-1, *ansatz.weight_shape)
    qdev = tq.QuantumDevice(n_wires=n, bsz=xs.shape[0], device=inputs.device)
    rot = {"rx": tqf.rx, "ry": tqf.ry, "rz": tqf.rz}
    for name in {"ry": ("ry",), "rx": ("rx",), "ry-rx": ("ry", "rx"), "none": ()}[ansatz.encoding]:
        for i in range(n):
            rot[name](qdev, wires=i, params=xs[:, i : i + 1])
    two = tqf.cz if ansatz.entangler == "cz-chain" else tqf.cnot
    for layer in range(ansatz.depth):
        for r, name in enumerate(ansatz.rotations):
            for i in range(n):
                rot[name](qdev, wires=i, params=ws[:, layer, r, i : i + 1])
        for c, t in ansatz.entangling_pairs():
            two(qdev, wires=[c, t])
    obs = {"x": tq.PauliX, "y": tq.PauliY, "z": tq.PauliZ}[ansatz.observable]
    out = tq.measurement.expval(qdev, list(range(n)), [obs() for _ in range(n)])
    return out.reshape(*lead, n)


@dataclass
class TQResult:
    seconds: float  # whole case, extrapolated linearly from ``circuits``
    cpu: float  # process CPU seconds, extrapolated the same way
    samples: int  # samples timed (each with all k sub-generators)
    circuits: int
    diff_out: float  # max |<P> (c) - <P> qmedgen| on those circuits
    diff_grad: float  # max abs diff of the gradients w.r.t. inputs and weights
    paired: float  # median of (c) / qmedgen on the same circuits, timed back to back in each repeat


TQ_TOL = 1e-4


def time_torchquantum(case: Case, device: torch.device, repeats: int, c_circuits: int) -> TQResult:
    """(c): forward+backward with TorchQuantum on ``c_circuits`` circuits (median after a warm-up), extrapolated."""
    import torchquantum as tq
    import torchquantum.functional as tqf

    a = case.ansatz
    x, w = _params(case, device)
    b = max(1, min(case.batch, c_circuits // case.k))
    x = x.detach()[:b].clone().requires_grad_()
    # agreement with qmedgen on the timed circuits: outputs and the gradients of their sum
    ref = expval(a, x, w)
    g_ref = torch.autograd.grad(ref.sum(), (x, w))
    out = _tq_expval(tq, tqf, a, x, w)
    g_tq = torch.autograd.grad(out.sum(), (x, w))
    diff_out = (out - ref).abs().max().item()
    diff_grad = max((p - q).abs().max().item() for p, q in zip(g_tq, g_ref))
    del ref, out, g_ref, g_tq
    times, cpu, paired = [], [], []
    for r in range(repeats + 1):
        x.grad = w.grad = None
        _sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        out = _tq_expval(tq, tqf, a, x, w)
        out.backward(torch.ones_like(out))
        _sync(device)
        t1, c1 = time.perf_counter(), time.process_time()
        del out
        # qmedgen on the same circuits right after: a ratio that sees the same machine load
        x.grad = w.grad = None
        out = expval(a, x, w)
        out.backward(torch.ones_like(out))
        _sync(device)
        if r:
            times.append(t1 - t0)
            cpu.append(c1 - c0)
            paired.append((t1 - t0) / (time.perf_counter() - t1))
        del out
    scale = case.batch / b
    return TQResult(statistics.median(times) * scale, statistics.median(cpu) * scale, b, b * case.k, diff_out,
                    diff_grad, statistics.median(paired))


BIG_SCRIPT = """
import resource, time, torch
from qmedgen.quantum import Ansatz, expval
a = Ansatz({n}, 2, "ry-rx", ("ry",), "cz-chain", "x")
x = torch.rand({b} // 5, 5, {n}, device="{dev}", requires_grad=True)
w = torch.rand(5, 2, 1, {n}, device="{dev}", requires_grad=True)
t0 = time.perf_counter(); e = expval(a, x, w); t1 = time.perf_counter(); e.sum().backward()
if x.is_cuda:
    torch.cuda.synchronize()
t2 = time.perf_counter()
gpu = torch.cuda.max_memory_allocated() / 2**30 if x.is_cuda else 0.0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
print(f"{{t1 - t0:.1f}} {{t2 - t1:.1f}} {{rss:.2f}} {{gpu:.2f}}")
"""


def big_run(n: int, batch: int, device: torch.device) -> str:
    """20 qubits x 320 circuits forward + backward in a fresh process (so its peak RSS is its own)."""
    import subprocess

    need = estimate_bytes(n, batch) / 2**30
    print(f"[big] {n} qubits x {batch} circuits, depth 2, forward+backward (memory model {need:.2f} GiB) ...",
          flush=True)
    code = BIG_SCRIPT.format(n=n, b=batch, dev=device)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode:
        return f"{n} qubits x {batch} circuits: FAILED ({out.stderr.strip().splitlines()[-1]})"
    fwd, bwd, rss, gpu = out.stdout.split()
    line = (f"{n} qubits x {batch} circuits (depth 2, MediQ-GAN gates), forward {fwd} s + backward {bwd} s, "
            f"peak RSS {rss} GiB" + (f", peak CUDA memory {gpu} GiB" if device.type == "cuda" else "")
            + f" (memory model {need:.2f} GiB)")
    print(f"[big] {line}", flush=True)
    return line


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"


def versions() -> str:
    parts = [f"python {platform.python_version()}", f"torch {torch.__version__}"]
    for dist in ("pennylane", "pennylane-lightning", "torchquantum"):
        try:
            parts.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(f"{dist} absent")
    return ", ".join(parts)


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer baseline samples and repeats")
    p.add_argument("--device", default="cpu",
                   help="device for qmedgen and baseline (c) (the PennyLane baselines always run on the CPU)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats of qmedgen and of (c) (median)")
    p.add_argument("--a-circuits", type=int, default=None, help="circuits timed for baseline (a)")
    p.add_argument("--b-batch", type=int, default=None, help="samples per QNode call timed for baseline (b)")
    p.add_argument("--c-circuits", type=int, default=None,
                   help="circuits timed for baseline (c) TorchQuantum (whole samples: K per MediQ-GAN sample)")
    p.add_argument("--no-baselines", action="store_true", help="time qmedgen only (skips (a), (b) and (c))")
    p.add_argument("--no-tq", action="store_true", help="skip baseline (c) TorchQuantum")
    p.add_argument("--no-pennylane", action="store_true", help="skip the PennyLane baselines (a) and (b)")
    p.add_argument("--no-append", action="store_true", help="do not append to benchmarks/RESULTS.md")
    p.add_argument("--note", default="", help="free text for the results line (e.g. 'contended')")
    p.add_argument("--big", action="store_true", help="only the memory check: 20 qubits x 320 circuits fwd+bwd")
    p.add_argument("--interleave", type=int, default=0, metavar="K",
                   help="only the ratio vs (a), K times per case, (a) and qmedgen timed back to back (baseline (a) "
                        "varies from run to run; this gives the spread of the ratio)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    repeats = args.repeats or (2 if args.quick else 5)
    a_circuits = args.a_circuits or (1 if args.quick else 3)
    b_batch = args.b_batch or (2 if args.quick else 4)
    c_circuits = args.c_circuits or (10 if args.quick else 20)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    contended = load > 0.5 * (os.cpu_count() or 1)

    print(f"machine: {machine()}\nversions: {versions()}\ndevice: {device}, load average {load:.1f}"
          f"{' (contended)' if contended else ''}", flush=True)
    if args.big:
        line = big_run(20, 320, device)
        if not args.no_append:
            append_lines([f"\n{_stamp(device, load, contended, args)}\n\n{versions()}; {line}"])
        return 0
    if args.interleave:
        lines = []
        for case in cases():
            for rep in range(args.interleave):
                ta = time_lightning_per_circuit(case, a_circuits) * case.batch * case.k
                t, _ = time_qmedgen(case, device, repeats)
                lines.append(f"{case.name}, repeat {rep + 1}: (a) {ta:.1f} s, qmedgen {t:.3f} s -> {ta / t:.1f}x")
                print(lines[-1], flush=True)
        if not args.no_append:
            append_lines([f"\n{_stamp(device, load, contended, args)}; interleaved (a) vs qmedgen, (a) from "
                          f"{a_circuits} circuits\n", *(f"- {x}" for x in lines)])
        return 0
    rows = []
    ours = {}
    for case in cases():
        t, cpu = time_qmedgen(case, device, repeats)
        ours[case.name] = (t, cpu)
        n_circ = case.batch * case.k
        print(f"[qmedgen] {case.name}: {t * 1e3:.1f} ms fwd+bwd, {cpu:.2f} CPU-s ({t / n_circ * 1e3:.2f} ms/circuit; "
              f"memory model {estimate_bytes(16, n_circ) / 2**20:.0f} MiB)", flush=True)
    rss = peak_rss_gib()
    gpu_peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    print(f"[qmedgen] peak RSS after all qmedgen runs: {rss:.2f} GiB"
          + (f", peak CUDA memory {gpu_peak:.2f} GiB" if gpu_peak is not None else ""), flush=True)
    for case in cases():
        t, cpu = ours[case.name]
        n_circ = case.batch * case.k
        ta = tb = None
        b_used = None
        tqr = None
        if not (args.no_baselines or args.no_pennylane):
            try:
                per = time_lightning_per_circuit(case, a_circuits)
                ta = per * n_circ
                print(f"[a] {case.name}: {per:.3f} s/circuit x {n_circ} circuits = {ta:.1f} s (extrapolated from "
                      f"{a_circuits} circuits)", flush=True)
            except ImportError as exc:
                print(f"[a] skipped: {exc}")
            try:
                tb, b_used = time_default_broadcast(case, b_batch)
                scale = case.batch / b_used
                print(f"[b] {case.name}: {tb:.1f} s (measured on {b_used} samples per call, x{scale:.0f})", flush=True)
            except ImportError as exc:
                print(f"[b] skipped: {exc}")
        if not (args.no_baselines or args.no_tq):
            tqr = _run_tq(case, device, repeats, c_circuits)
        tc = tqr.seconds if tqr else None
        ra = ta / t if ta else None
        rb = tb / t if tb else None
        rc = tc / t if tc else None
        rc_cpu = tqr.cpu / cpu if tqr else None
        best = min(v for v in (ta, tb, tc) if v) / t if (ta or tb or tc) else None
        print(f"==> {case.name}: qmedgen {t * 1e3:.1f} ms; vs (a) {ra and f'{ra:.0f}x'}; vs (b) {rb and f'{rb:.0f}x'};"
              f" vs (c) {rc and f'{rc:.1f}x'} (CPU-s {rc_cpu and f'{rc_cpu:.1f}x'}); vs best baseline "
              f"{best and f'{best:.0f}x'}", flush=True)
        rows.append((case.name, t, cpu, ta, tb, ra, rb, best, b_used, tqr))

    if not args.no_append:
        append_results(rows, device, rss, gpu_peak, load, contended, args, a_circuits)
    return 0


_TQ_SKIP_PRINTED = []


def _run_tq(case: Case, device: torch.device, repeats: int, c_circuits: int) -> TQResult | None:
    """Baseline (c), or None (with one message for the whole run) when TorchQuantum cannot be imported."""
    try:
        import torchquantum  # noqa: F401
    except Exception as exc:  # its import chain fails in many ways (qiskit, torchvision, ...), not only ImportError
        if not _TQ_SKIP_PRINTED:
            print(f"[c] skipped: torchquantum not importable ({type(exc).__name__}: {exc})", flush=True)
            _TQ_SKIP_PRINTED.append(True)
        return None
    r = time_torchquantum(case, device, repeats, c_circuits)
    ok = "OK" if max(r.diff_out, r.diff_grad) < TQ_TOL else "MISMATCH"
    print(f"[c] {case.name}: {r.seconds:.2f} s, {r.cpu:.2f} CPU-s (measured on {r.samples} sample(s) = {r.circuits} "
          f"circuits, x{case.batch / r.samples:.1f}; on those circuits {r.paired:.1f}x qmedgen's time); "
          f"agreement with qmedgen on those circuits: max |d<P>| "
          f"{r.diff_out:.1e}, max |d grad| {r.diff_grad:.1e} (fp32, tol {TQ_TOL:.0e}) {ok}", flush=True)
    return r


def _fmt(v, unit="", spec=".1f"):
    return "-" if v is None else f"{v:{spec}}{unit}"


def append_results(rows, device, rss, gpu_peak, load, contended, args, a_circuits) -> None:
    lines = [
        f"\n{_stamp(device, load, contended, args)}",
        f"\n{versions()}; qmedgen peak RSS {rss:.2f} GiB"
        + (f", peak CUDA memory {gpu_peak:.2f} GiB" if gpu_peak is not None else "")
        + f"; (a) extrapolated from {a_circuits} circuit(s){'; --quick' if args.quick else ''}\n",
        "\n| case | qmedgen wall | qmedgen CPU | (a) lightning/sample | (b) default.qubit bcast | (c) TorchQuantum "
        "| vs (a) | vs (b) | vs (c) | vs best |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    checks = []
    for name, t, cpu, ta, tb, ra, rb, best, _, tqr in rows:
        tc = tqr.seconds if tqr else None
        rc = tc / t if tc else None
        lines.append(f"| {name} | {t * 1e3:.0f} ms | {cpu:.2f} s | {_fmt(ta, ' s')} | {_fmt(tb, ' s')} | "
                     f"{_fmt(tc, ' s', '.2f')} | {_fmt(ra, 'x', '.0f')} | {_fmt(rb, 'x', '.0f')} | "
                     f"{_fmt(rc, 'x', '.1f')} | {_fmt(best, 'x', '.0f')} |")
        if tqr:
            checks.append(f"{name}: {tqr.cpu:.2f} CPU-s (qmedgen {cpu:.2f}, {tqr.cpu / cpu:.1f}x), timed on "
                          f"{tqr.circuits} circuits ({tqr.paired:.1f}x qmedgen on the same circuits, back to back), "
                          f"max |d<P>| {tqr.diff_out:.1e}, max |d grad| {tqr.diff_grad:.1e}")
    if checks:
        lines.append(f"\n(c) TorchQuantum, extrapolated linearly from the timed circuits; agreement with qmedgen "
                     f"(fp32, tol {TQ_TOL:.0e}): " + "; ".join(checks) + ".")
    append_lines(lines)


def _stamp(device, load, contended, args) -> str:
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    flag = "contended" if contended else "quiet"
    return f"### {when}: {machine()}, device {device} ({flag}, load {load:.1f}){' ' + args.note if args.note else ''}"


def append_lines(lines: list[str]) -> None:
    """Insert ``lines`` at the end of the engine section of RESULTS.md (creating file and section if needed)."""
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n\nEach area appends its own dated sections; numbers taken on a busy "
                           "machine are marked *contended*.\n")
    text = RESULTS.read_text()
    if SECTION not in text:
        text += f"\n{SECTION}\n\nForward + backward of the circuit batch (`benchmarks/bench_engine.py`). (a) = one "
        text += "lightning.qubit adjoint QNode per sample and sub-generator (per-circuit cost extrapolated); (b) = "
        text += "default.qubit with parameter broadcasting, torch backprop (extrapolated from a few samples per "
        text += "call); (c) = TorchQuantum's batched functional API, torch backprop (extrapolated from a few "
        text += "circuits). `--big`: 20 qubits x 320 circuits forward+backward in a fresh process (peak RSS).\n"
    start = text.index(SECTION)
    nxt = text.find("\n## ", start + len(SECTION))  # keep our entries inside our section
    end = len(text) if nxt < 0 else nxt
    RESULTS.write_text(text[:end].rstrip("\n") + "\n" + "\n".join(lines) + "\n" + text[end:])
    print(f"appended to {RESULTS}")


if __name__ == "__main__":
    sys.exit(main())
