"""CLI: ``qmedgen evaluate``, ``qmedgen utility`` and ``qmedgen benchmark``."""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from pathlib import Path


@contextlib.contextmanager
def _plain_warnings():
    """Print qmedgen's own warnings (e.g. small-sample FID) as one line each, without source lines."""
    old = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if category.__module__.startswith("qmedgen"):
            print(f"qmedgen: warning: {message}", file=sys.stderr)
        else:
            old(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = old


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate", help="sample-quality metrics (FID, KID, PRDC, diversity, memorisation) with bootstrap CIs",
        description="Evaluate generated samples (a `qmedgen sample` output or a run dir) against a real split. "
                    "Writes metrics_<extractor>.json and .md next to the samples (or in --out).")
    p.add_argument("samples", type=Path, help="sample folder (samples.npz and/or class_<k>/), npz file or run dir")
    p.add_argument("--data", help="dataset name (default: the dataset recorded by the run)")
    p.add_argument("--split", default="test", help="real reference split (default: test)")
    p.add_argument("--extractor", default="domain",
                   help="'domain' (classifier trained on the dataset, default), 'inception', or a TorchScript path")
    p.add_argument("--train-data", default="auto",
                   help="images the generator saw, for memorisation: auto (the run's recorded training images; "
                        "skipped when unknown), none, or NAME[:SPLIT]")
    p.add_argument("--size", type=int, help="image size of the real set (default: the run's size, else 28)")
    p.add_argument("--out", type=Path, help="output folder (default: next to the samples)")
    p.add_argument("--n-boot", type=int, default=200, help="bootstrap replicates (default 200)")
    p.add_argument("--fid-boot", type=int, default=50, help="bootstrap replicates for FID (default 50)")
    p.add_argument("--kid-subsets", type=int, default=100)
    p.add_argument("--k", type=int, default=5, help="k of the k-NN metrics (default 5)")
    p.add_argument("--class-weighting", choices=("real", "none"), default="real",
                   help="reweight generated classes to the real class proportions (default) or not")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-conditional", action="store_true", help="skip the domain classifier's conditional accuracy")
    p.add_argument("--no-real-baseline", action="store_true",
                   help="skip scoring real images of another split (val, else train) as a 'perfect generator' row")
    p.add_argument("--root", type=Path, help="data root (default $QMEDGEN_DATA or ~/.qmedgen/data)")
    p.add_argument("--device", help="cpu, cuda, cuda:N (default: cuda if available)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_evaluate)

    u = subparsers.add_parser(
        "utility", help="downstream utility: classifier trained on real, real+synthetic, synthetic only",
        description="Train a small ResNet on the real few-shot subset (baseline, with standard augmentation), "
                    "real + synthetic at given ratios, and synthetic only (TSTR); test on the official test split "
                    "over several seeds; report mean, 95%% CI and paired comparisons vs the baseline.")
    u.add_argument("samples", type=Path, nargs="?", help="sample folder or run dir (omit for real-only arms)")
    u.add_argument("--data", help="dataset name (default: the dataset recorded by the run)")
    u.add_argument("--split", default="test")
    u.add_argument("--n-per-class", type=int, help="real images per class (default: the run's training images)")
    u.add_argument("--subset-seed", type=int, default=0, help="seed of the real few-shot draw")
    u.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="classifier seeds (default 0 1 2)")
    u.add_argument("--ratios", type=float, nargs="+", default=[1.0], help="synthetic/real ratios (default 1)")
    u.add_argument("--arms", nargs="+", default=["real", "real-noaug", "real+syn", "syn"],
                   help="arms: real (baseline), real-noaug, real+syn (one per ratio), real+syn@val (ratio chosen on "
                        "validation), syn, syn>real (pre-train on synthetic, fine-tune on real)")
    u.add_argument("--epochs", type=float, default=100,
                   help="passes over each arm's own training set (the same for every arm; default 100)")
    u.add_argument("--augment", nargs="*",
                   help="fixed augmentation ops for every arm (default: chosen on a validation split among the "
                        "dataset's label-preserving ones; see qmedgen.data.catalog.LABEL_PRESERVING)")
    u.add_argument("--batch-size", type=int, default=64)
    u.add_argument("--size", type=int, help="image size of the real set (default: the run's size, else 28)")
    u.add_argument("--out", type=Path, help="output folder (default: next to the samples)")
    u.add_argument("--root", type=Path)
    u.add_argument("--device")
    u.add_argument("--quiet", action="store_true")
    u.set_defaults(func=_utility)

    b = subparsers.add_parser(
        "benchmark", help="run a benchmark protocol (models x subset sizes x seeds), resumable",
        description="Train, sample, evaluate and test utility for every cell of a protocol; finished cells are "
                    "recorded in OUT/state.json and skipped when the command is re-run.")
    b.add_argument("protocol", nargs="?", help="shipped protocol name or YAML file")
    b.add_argument("--quick", action="store_true", help="the protocol's smoke-test variant (CPU, < 20 min)")
    b.add_argument("--out", type=Path, help="output folder (default benchmarks/<protocol name>)")
    b.add_argument("--list", action="store_true", help="list the shipped protocols")
    b.add_argument("--models", type=lambda v: v.split(","),
                   help="only these model labels, comma-separated (run one process per group, same --out, to use "
                        "several cores: each saves into the shared state)")
    b.add_argument("--results-only", action="store_true",
                   help="run no cell: write results.json, results.md, plots and grids from the finished cells")
    b.add_argument("--device")
    b.add_argument("--quiet", action="store_true")
    b.set_defaults(func=_benchmark)


def _evaluate(args: argparse.Namespace) -> int:
    from qmedgen.evaluate.evaluation import EvalConfig
    from qmedgen.evaluate.pipeline import SampleEvalOptions, evaluate_samples

    cfg = EvalConfig(n_boot=args.n_boot, fid_boot=args.fid_boot, kid_subsets=args.kid_subsets, k=args.k,
                     class_weighting=args.class_weighting, seed=args.seed, progress=not args.quiet)
    options = SampleEvalOptions(data=args.data, split=args.split, extractor=args.extractor, train_data=args.train_data,
                                out=args.out, metrics=cfg, conditional=not args.no_conditional,
                                real_baseline=not args.no_real_baseline, size=args.size, root=args.root,
                                device=args.device)
    with _plain_warnings():
        _, json_path, md_path = evaluate_samples(args.samples, options)
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}")
    return 0


def _utility(args: argparse.Namespace) -> int:
    from qmedgen.evaluate.pipeline import utility_for_samples
    from qmedgen.evaluate.utility import UtilityConfig

    cfg = UtilityConfig(arms=tuple(args.arms), ratios=tuple(args.ratios), seeds=tuple(args.seeds), epochs=args.epochs,
                        augment=None if args.augment is None else tuple(args.augment),
                        batch_size=args.batch_size, progress=not args.quiet, device=args.device)
    _, json_path, md_path = utility_for_samples(args.samples, args.data, args.n_per_class, args.subset_seed,
                                                args.split, cfg, args.out, args.root, args.size)
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}")
    return 0


def _benchmark(args: argparse.Namespace) -> int:
    from qmedgen.errors import ConfigError
    from qmedgen.evaluate.benchmark import list_protocols, load_protocol, run_benchmark

    if args.list or not args.protocol:
        for name in list_protocols():
            proto = load_protocol(name)
            print(f"{name}: {' '.join(str(proto.get('description', '')).split())[:110]}")
        if not args.list and not args.protocol:
            raise ConfigError("give a protocol name or YAML file (see the list above)")
        return 0
    with _plain_warnings():
        results = run_benchmark(args.protocol, args.out, args.quick, progress=not args.quiet, device=args.device,
                                models=args.models, run_cells=not args.results_only)
    out = args.out or Path("benchmarks") / results["protocol"]
    print((Path(out) / "results.md").read_text())
    print(f"wrote {out}/results.json, results.md and {len(results.get('plots', []))} plots")
    return 0
