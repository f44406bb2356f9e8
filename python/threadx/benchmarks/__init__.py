"""Benchmarks that ship with threadx and run as ``python -m threadx.benchmarks.<name>``.

- :mod:`threadx.benchmarks.run_auto_profile`: ``device="auto"`` against every forced backend,
  TA-Lib and Polars, per indicator and size, with CSV / JSON results and a chart.
"""
