"""Benchmarks that compare brushprint with the way a user would otherwise do it and print ratios.

Not tests: run `python -m bench.<name> [--quick]` from the repository root, or `make bench` for all of them
(rewrites BENCHMARKS.md). Also home to the helpers the tests share with the benchmarks: `devmodel` (a small real
model directory), `server` (the service as a child process) and `pictures` (deterministic test paintings).
"""
