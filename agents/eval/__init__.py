"""Evaluating workflows on JSONL datasets: arms (configs) compared on the same items, resumable
results, Wilson intervals, McNemar tests, a markdown report and a plot. `braid eval` runs it."""
