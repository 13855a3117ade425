"""Benchmarks: speed and memory of the modules and models, measured as ratios in one run (helpers in tools/measure.py)."""
