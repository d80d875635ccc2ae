# The kdag operator against a cluster (docs/operator.md).

.PHONY: run
run: venv ## run kdag-operator against the current KUBECONFIG (all namespaces)
	$(BIN)/kdag-operator --all-namespaces

.PHONY: demo
demo: venv cluster-bins ## local cluster + operator: an example run through its approval gate
	@bash hack/demo.sh
