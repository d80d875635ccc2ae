# Local Kubernetes control plane for tests, demo and benchmarks (see
# docs/local-cluster.md). Binaries live in a cache outside the clone.

.PHONY: cluster-bins
cluster-bins: ## build etcd, kube-*, kubectl, kwok, kwokctl, helm from Go modules (cached)
	@bash hack/build-cluster-bins.sh >/dev/null

.PHONY: cluster-up
cluster-up: cluster-bins ## start (or reuse) the kwok cluster; last line: export KUBECONFIG=...
	@bash hack/cluster-up.sh

.PHONY: cluster-down
cluster-down: ## stop and delete the local cluster (binaries stay cached)
	@bash hack/cluster-down.sh
