# `make demo`: the README's first command (hack/demo.sh).

.PHONY: demo
demo: venv ## a local cluster, the CRDs, the operator and an example run with an approval gate, watched to the end
	@bash hack/demo.sh
