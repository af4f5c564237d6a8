"""Benchmarks that compare brushprint with the way a user would otherwise do it and print ratios.

Not tests: run `python bench/<name>.py [--quick]`, or `make bench` for all of them (rewrites BENCHMARKS.md).
"""
