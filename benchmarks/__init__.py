"""trainguard's benchmarks; ``python -m benchmarks.run`` (``make bench``) runs them all."""
