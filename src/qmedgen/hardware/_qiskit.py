"""Optional-import guard: everything qiskit-related is an extra (``pip install 'qmedgen[quantum]'``)."""

from __future__ import annotations

import importlib

from qmedgen.errors import UserError


class MissingExtraError(UserError, ImportError):
    """A feature needs an optional dependency that is not installed."""


def require(module: str, feature: str = "hardware export and inference"):
    """Import ``module`` or raise a :class:`MissingExtraError` that names the ``quantum`` extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{feature} needs the optional package {module.split('.')[0]!r} ({exc}); "
            "install it with: pip install 'qmedgen[quantum]'"
        ) from exc
