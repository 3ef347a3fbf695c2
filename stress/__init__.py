"""unitsync's benchmarks: ``python -m stress <scenario>`` (see stress/README.md)."""
