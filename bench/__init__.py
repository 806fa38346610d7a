"""Benchmarks: `python -m bench NAME...` prints each figure and appends it to bench/results.jsonl."""
