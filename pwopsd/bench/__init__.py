"""Benchmarks that print numbers and write results/bench/*.json: ``python -m pwopsd.bench NAME``.

NAME is ``loss``, ``grading``, ``rollout`` or ``engine`` (the vLLM engine plan; with
``--compare-startup``, its start-up time).
"""
