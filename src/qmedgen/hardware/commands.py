"""``qmedgen hardware export|infer|robustness|backends``: trained circuits on IBM device models and devices."""

from __future__ import annotations

import argparse
from pathlib import Path

from qmedgen.cli_types import positive_int_list
from qmedgen.errors import ConfigError


def _str_list(text: str) -> list[str]:
    values = [t.strip() for t in text.split(",") if t.strip()]
    if not values:
        raise argparse.ArgumentTypeError("expected a comma-separated list of names")
    return values


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("hardware", help="export trained circuits and run them on IBM device models or devices")
    hw = p.add_subparsers(dest="hardware_command", metavar="ACTION")
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("run_dir", type=Path, help="a training run directory")
        q.add_argument("--checkpoint", default="latest", help="checkpoint step or 'latest' (default)")
        q.add_argument("--device", default="cpu", help="torch device for the classical parts (default cpu)")
        q.add_argument("--out", type=Path, default=None, help="output directory (default RUN_DIR/hardware/...)")
        q.add_argument("--seed", type=int, default=0, help="seed of latents, shots and transpiler (default 0)")
        q.add_argument("--sample-opt", action="append", default=[], metavar="KEY=VALUE",
                       help="option for the model's sampler, repeatable (diffusion: sampler=ddim, steps=50)")

    e = hw.add_parser("export", help="QASM3 of every trained circuit, transpiled for a device, with gate stats")
    common(e)
    e.add_argument("--backend", default="fake_marrakesh", help="fake_<device> or ibm_<device> (default fake_marrakesh)")
    e.add_argument("--optimization-level", type=int, default=3, choices=[0, 1, 2, 3])
    e.set_defaults(func=cmd_export)

    i = hw.add_parser("infer", help="generate images with circuits run exactly, with shots, under Aer noise, on IBM")
    common(i)
    i.add_argument("--mode", choices=["exact", "shots", "aer", "ibm"], default="aer")
    i.add_argument("--backend", default=None, help="fake_<device> for aer, ibm_<device> for ibm")
    i.add_argument("--shots", type=int, default=1024)
    i.add_argument("--n-per-class", type=int, default=10)
    i.add_argument("--batch-size", type=int, default=500, help="images per model call (= bindings per job)")
    i.add_argument("--method", default="automatic", help="Aer simulation method (aer mode; default automatic)")
    i.add_argument("--primitive", choices=["sampler", "estimator"], default="sampler", help="ibm mode primitive")
    i.add_argument("--execution", choices=["batch", "session", "job"], default="batch", help="ibm execution mode")
    i.add_argument("--resilience-level", type=int, default=None, choices=[0, 1, 2], help="estimator resilience")
    i.add_argument("--trajectories", default="auto",
                   help="aer mode: noise trajectories per circuit (auto, an integer, or 'shots' = one per shot)")
    i.add_argument("--twirling", action="store_true", help="Pauli twirling of gates and measurements (ibm mode)")
    i.add_argument("--dd", action="store_true", help="dynamical decoupling (ibm mode)")
    i.set_defaults(func=cmd_infer)

    r = hw.add_parser("robustness", help="metric deltas vs exact inference per device model and shot count")
    common(r)
    r.add_argument("--backends", type=_str_list, default=["fake_marrakesh", "fake_brisbane", "fake_torino"])
    r.add_argument("--shots", type=positive_int_list, default=[256, 1024])
    r.add_argument("--n-per-class", type=int, default=10)
    r.add_argument("--batch-size", type=int, default=500)
    r.add_argument("--method", default="automatic", help="Aer simulation method (default automatic)")
    r.add_argument("--trajectories", default="auto",
                   help="noise trajectories per circuit (auto, an integer, or 'shots' = one per shot)")
    r.add_argument("--no-shot-rows", action="store_true", help="skip the noiseless N-shot rows on our simulator")
    r.add_argument("--kid-extractor", default=None, help="also KID vs exact images in this feature space, "
                   "e.g. domain:retinamnist or inception")
    r.set_defaults(func=cmd_robustness)

    b = hw.add_parser("backends", help="list the offline device models")
    b.set_defaults(func=cmd_backends)


def _trajectories(text: str):
    if text == "auto":
        return "auto"
    if text == "shots":
        return None
    try:
        return int(text)
    except ValueError as exc:
        raise ConfigError(f"--trajectories must be auto, shots or an integer, got {text!r}") from exc


def _sample_opts(items: list[str]) -> dict:
    """``KEY=VALUE`` strings -> dict, values parsed as YAML scalars (50 -> int, none -> None, ddim -> str)."""
    import yaml

    opts = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--sample-opt expects KEY=VALUE, got {item!r}")
        opts[key.strip()] = yaml.safe_load(value)
    return opts


def _load(args):
    from qmedgen.train.api import load_run

    return load_run(args.run_dir, args.checkpoint, args.device)


def _out(args, name: str) -> Path:
    return args.out if args.out is not None else Path(args.run_dir) / "hardware" / name


def cmd_export(args: argparse.Namespace) -> int:
    from qmedgen.hardware.inference import export_circuits

    model = _load(args)
    out = _out(args, f"export-{args.backend}")
    summary = export_circuits(model, args.backend, out, args.optimization_level, args.seed)
    for c in summary["circuits"]:
        t = c["transpiled"]
        print(f"{c['circuit']}: {c['n_qubits']} qubits, transpiled depth {t['depth']}, "
              f"{t['two_qubit_gates']} two-qubit gates (2q depth {t['two_qubit_depth']})")
    print(f"wrote {len(summary['circuits'])} circuits to {out}")
    return 0


def cmd_infer(args: argparse.Namespace) -> int:
    from qmedgen.hardware.inference import infer

    options: dict = {}
    if args.mode == "aer":
        options.update(method=args.method, trajectories=_trajectories(args.trajectories))
    elif args.mode == "ibm":
        options.update(primitive=args.primitive, execution=args.execution, resilience_level=args.resilience_level,
                       twirling=args.twirling, dynamical_decoupling=args.dd)
    name = args.mode if args.mode == "exact" else f"{args.mode}-{args.backend or 'ideal'}-{args.shots}"
    out = _out(args, f"infer-{name}")
    model = _load(args)
    info = infer(model, args.mode, out, args.backend, args.shots, args.n_per_class, args.seed, args.batch_size,
                 sample_opts=_sample_opts(args.sample_opt), **options)
    err = info.get("expval_errors")
    extra = f", <O> RMSE vs exact {err['expval_rmse']:.4f}" if err else ""
    print(f"{info['n_images']} images in {info['seconds']:.1f} s{extra} -> {out}")
    return 0


def cmd_robustness(args: argparse.Namespace) -> int:
    from qmedgen.hardware.inference import robustness, robustness_table

    if any(not b.lower().startswith("fake_") for b in args.backends):
        raise ConfigError(f"robustness uses offline device models (fake_*), got {args.backends}")
    out = _out(args, "robustness")
    model = _load(args)
    result = robustness(model, out, args.backends, args.shots, args.n_per_class, args.seed, args.batch_size,
                        include_shots=not args.no_shot_rows, kid_extractor=args.kid_extractor,
                        sample_opts=_sample_opts(args.sample_opt), method=args.method,
                        trajectories=_trajectories(args.trajectories))
    print(robustness_table(result["rows"]))
    print(f"wrote robustness.json, robustness.md and figures to {out}")
    return 0


def cmd_backends(args: argparse.Namespace) -> int:
    from qmedgen.hardware.backends import FAKE_BACKENDS

    for name, cls in FAKE_BACKENDS.items():
        print(f"{name:18s} qiskit_ibm_runtime.fake_provider.{cls}")
    print("any other fake_provider device as fake_<device>; real devices as ibm_<device> (saved IBM Quantum account)")
    return 0
