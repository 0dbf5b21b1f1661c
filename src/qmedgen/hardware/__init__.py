"""Export to Qiskit/OpenQASM and inference on (fake or real) IBM devices.

>>> from qmedgen.hardware import make_executor, use_executor          # doctest: +SKIP
>>> with use_executor(generator, make_executor("aer", "fake_marrakesh", shots=1024)):   # doctest: +SKIP
...     images = generator(z, y)

Everything qiskit-related is imported lazily; without the ``quantum`` extra the functions raise a clear error.
"""

from qmedgen.hardware.executors import (
    AerExecutor,
    ExactExecutor,
    RecordingExecutor,
    RuntimeExecutor,
    ShotsExecutor,
    make_executor,
    quantum_layers,
    use_executor,
)
from qmedgen.hardware.inference import export_circuits, generate, infer, robustness

__all__ = [
    "AerExecutor",
    "ExactExecutor",
    "RecordingExecutor",
    "RuntimeExecutor",
    "ShotsExecutor",
    "export_circuits",
    "generate",
    "infer",
    "make_executor",
    "quantum_layers",
    "robustness",
    "use_executor",
]
