"""Training: the loop, the held-out split and its metrics."""
