"""Benchmarks: module profiler, model overhead, and the measuring helpers they (and tools/ablate.py) share."""
