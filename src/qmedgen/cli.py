"""Command-line interface: one root parser; each subsystem registers its own subcommands.

A subsystem module named in ``COMMAND_MODULES`` exposes ``register(subparsers) -> None`` and attaches a
``func(args) -> int`` to each parser it adds. Errors meant for users are raised as :class:`qmedgen.errors.UserError`
and printed without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from qmedgen import __version__
from qmedgen.errors import UserError

COMMAND_MODULES: tuple[str, ...] = (
    "qmedgen.data.commands",
    "qmedgen.train.commands",
    "qmedgen.evaluate.commands",
    "qmedgen.analysis.commands",
    "qmedgen.hardware.commands",
    "qmedgen.report.commands",
    "qmedgen.demo",
    "qmedgen.augment",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qmedgen",
        description="Quantum-inspired generative models for few-shot medical image synthesis.",
    )
    parser.add_argument("--version", action="version", version=f"qmedgen {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"qmedgen: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("qmedgen: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
