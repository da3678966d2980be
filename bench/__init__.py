"""Benchmarks: each module has ``run(short: bool) -> list[dict]``; ``python -m bench`` prints one table."""
