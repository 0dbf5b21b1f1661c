"""Export to Qiskit/OpenQASM and inference on (fake or real) IBM devices."""
