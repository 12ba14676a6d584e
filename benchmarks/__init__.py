"""Benchmarks of Server Push Lab: scripts that measure and write CSV to ``benchmarks/results/``.

Run them from the repository root as modules, e.g. ``python -m benchmarks.techniques --quick``
(see benchmarks/README.md).
"""
