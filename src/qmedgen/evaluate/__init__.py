"""Offline metrics, downstream utility and the benchmark harness."""
