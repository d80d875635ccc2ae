# Programs the test suite needs beside the cluster binaries.

.PHONY: test-deps
test-deps: ## install test-only system programs (Debian's prometheus server)
	@bash hack/ensure-prometheus.sh
