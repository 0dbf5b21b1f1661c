"""``qmedgen analyze``: run analysis (Jacobian spectra, latent geometry) and ansatz trainability scans.

    qmedgen analyze RUN_DIR [RUN_DIR ...] [--out DIR]          # one run: into RUN_DIR/analysis; several: + comparison
    qmedgen analyze ansatz --preset mediqgan|qdiffusion --qubits 2,4,6,8 --depths 1,2,4,8 --out DIR

The first positional word ``ansatz`` selects the ansatz scan; anything else is a run directory (write ``./ansatz``
for a run directory of that name).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from qmedgen.cli_types import positive_int_list
from qmedgen.errors import ConfigError
from qmedgen.fileio import write_json

EPILOG = """examples:
  qmedgen analyze runs/00003-mediqgan-retinamnist
  qmedgen analyze runs/00003-mediqgan-q runs/00004-mediqgan-mlp runs/00005-mediqgan-k0 --out compare/
  qmedgen analyze ansatz --preset mediqgan --qubits 2,4,6,8 --depths 1,2,4,8 --out ansatz-mediqgan/
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "analyze",
        help="Jacobian spectra and latent geometry of runs; trainability/expressibility of an ansatz",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("targets", nargs="+", metavar="RUN_DIR|ansatz", help="run directories, or the word 'ansatz'")
    p.add_argument("--out", type=Path, default=None, help="output directory (runs: default RUN_DIR/analysis)")
    p.add_argument("--seed", type=int, default=0)
    r = p.add_argument_group("run analysis")
    r.add_argument("--checkpoint", default="latest", help="checkpoint analysed in full (default latest)")
    r.add_argument("--no-checkpoints", action="store_true", help="skip tracking the spectra over all checkpoints")
    r.add_argument("--n-samples", type=int, default=8, help="latent points per Jacobian spectrum (default 8)")
    r.add_argument("--geometry-samples", type=int, default=64, help="latent pairs for PPL/isometry (default 64)")
    r.add_argument("--extractor", default="domain",
                   help="feature space: domain (the run's dataset classifier, default), inception, pixels, or a "
                        "TorchScript file")
    r.add_argument("--device", default="cpu", help="torch device (default cpu)")
    r.add_argument("--sample-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="option for the model's sampler, repeatable (diffusion: sampler=ddim, steps=20)")
    a = p.add_argument_group("ansatz scan")
    a.add_argument("--preset", choices=["mediqgan", "qdiffusion"], action="append",
                   help="ansatz family (repeatable; default both)")
    a.add_argument("--qubits", type=positive_int_list, default=[2, 4, 6, 8])
    a.add_argument("--depths", type=positive_int_list, default=[1, 2, 4, 8])
    a.add_argument("--grad-samples", type=int, default=200, help="random parameter sets per gradient variance")
    a.add_argument("--pairs", type=int, default=2000, help="random state pairs per expressibility estimate")
    a.add_argument("--bins", type=int, default=75, help="fidelity histogram bins (Sim et al. 2019: 75)")
    a.add_argument("--mw-samples", type=int, default=300, help="random parameter sets per Meyer-Wallach estimate")
    a.add_argument("--costs", default="mean,global", help="costs for the gradient variance: mean,local,global")
    p.set_defaults(func=cmd_analyze)


def cmd_analyze(args: argparse.Namespace) -> int:
    if args.targets[0] == "ansatz":
        if len(args.targets) > 1:
            raise ConfigError(f"'analyze ansatz' takes no run directories, got {args.targets[1:]}")
        return cmd_ansatz(args)
    return cmd_runs(args)


def cmd_ansatz(args: argparse.Namespace) -> int:
    from qmedgen.analysis.ansatz import ScanConfig, plot_scan, scan
    out = args.out or Path("ansatz-analysis")
    costs = tuple(c.strip() for c in args.costs.split(",") if c.strip())
    config = ScanConfig(args.grad_samples, args.pairs, args.mw_samples, args.bins, costs, args.seed)
    for preset in args.preset or ["mediqgan", "qdiffusion"]:
        result = scan(preset, args.qubits, args.depths, config)
        write_json(out / f"ansatz_{preset}.json", result)
        plot_scan(result, out)
        print(f"{preset}: qubits depth  " + "  ".join(f"Var[dC/dθ] {c}" for c in costs) + "  KL(Haar)  MW Q")
        for row in result["results"]:
            grads = "  ".join(f"{row['gradient'][c]['var_mean']:.3e}" for c in costs)
            print(f"  {row['n_qubits']:>6} {row['depth']:>5}  {grads}  {row['expressibility']['kl']:.4f}"
                  f"  {row['entanglement']['mean']:.3f}")
    print(f"wrote JSON and figures to {out}")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from qmedgen.analysis.runs import analyze_run, compare_runs
    from qmedgen.hardware.commands import _sample_opts

    runs = [Path(t) for t in args.targets]
    for r in runs:
        if not (r / "config.json").is_file():
            raise ConfigError(f"{r} is not a run directory (no config.json); for the ansatz scan use 'analyze ansatz'")
    results = []
    for r in runs:
        out = (args.out / r.name) if (args.out is not None and len(runs) > 1) else args.out
        res = analyze_run(r, out, args.checkpoint, not args.no_checkpoints, args.n_samples, args.extractor,
                          args.geometry_samples, args.device, args.seed, _sample_opts(args.sample_opt))
        results.append(res)
        print(f"{r}: feature space {res['feature_space']}")
        for name, s in res["jacobian"].items():
            cond = s["log10_condition_median"]
            print(f"  {name:28s} erank {s['erank_mean']:7.2f} / max {s['max_rank']:<5d} numerical rank "
                  f"{s['numerical_rank_mean']:6.1f}  log10 cond {'inf' if cond is None else f'{cond:.2f}'}")
        if "ppl" in res["geometry"]:
            print(f"  PPL {res['geometry']['ppl']['ppl']:.4g}")
    if len(results) > 1:
        out = args.out or Path("analysis-comparison")
        compare_runs(results, out)
        print(f"comparison table and figure in {out}")
    return 0
