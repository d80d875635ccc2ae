# Benchmarks on the local KWOK cluster (SPEC §8, docs/benchmarks.md). Long: run in the
# background (`nohup make bench > bench.log &`). Pick scenarios with SCENARIOS=a,b (or the
# environment); BENCH_ARGS=--quick runs them at smoke-test scale.
SCENARIOS ?=
BENCH_ARGS ?=

.PHONY: bench
bench: venv cluster-bins ## benchmarks: bench/results/*.json and the table in docs/benchmarks.md (SCENARIOS=fanout,chain,concurrent,latency BENCH_ARGS=--quick)
	$(BIN)/python -m bench $(if $(SCENARIOS),--scenarios $(SCENARIOS)) $(BENCH_ARGS)
