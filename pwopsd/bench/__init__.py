"""Benchmarks that print numbers and write results/bench/*.json: ``python -m pwopsd.bench NAME``."""
