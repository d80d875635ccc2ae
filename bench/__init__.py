"""kdag's benchmarks (SPEC §8): scenarios run on the local KWOK cluster, measured from outside.

`python -m bench` (or `make bench`) runs them; see docs/benchmarks.md for what is measured and
how, and bench/results/ for the raw numbers.
"""
