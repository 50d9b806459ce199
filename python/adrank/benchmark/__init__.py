"""Measuring adrank end to end: the load test, the plain PyTorch baseline, the report."""
