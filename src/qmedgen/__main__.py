"""`python -m qmedgen` (and `torchrun -m qmedgen`) entry point."""

from qmedgen.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
