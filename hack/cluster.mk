# Local Kubernetes control plane for tests, demo and benchmarks (see
# docs/local-cluster.md). Binaries live in a cache outside the clone.

.PHONY: cluster-bins
cluster-bins: ## build etcd, kube-*, kubectl, kwok, kwokctl, helm from Go modules (cached)
	@bash hack/build-cluster-bins.sh >/dev/null

# REAL_NODE=1 also starts a real kubelet+containerd node (root; hack/real-node/).
REAL_NODE ?= 0

.PHONY: cluster-up
cluster-up: cluster-bins ## start (or reuse) the kwok cluster (REAL_NODE=1: and a real node); last line: export KUBECONFIG=...
	@REAL_NODE=$(REAL_NODE) bash hack/cluster-up.sh

.PHONY: real-node-down
real-node-down: ## stop the real node only (the kwok cluster keeps running)
	@bash hack/real-node/down.sh

.PHONY: cluster-down
cluster-down: ## stop and delete the local cluster (binaries stay cached)
	@bash hack/cluster-down.sh
