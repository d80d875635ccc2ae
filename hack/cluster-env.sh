# Sourced by the hack/ cluster scripts: the one place that pins versions and
# knows where things live.
# shellcheck shell=bash disable=SC2034  # every variable here is for the scripts that source it

# Pinned (not "newest at build time") so that every developer and CI run gets
# exactly the same control plane; bump deliberately.
K8S_VERSION=v1.34.4   # newest v1.34 patch on the Go module proxy when pinned
KWOK_VERSION=v0.7.0   # newest v0.7 patch
ETCD_VERSION=v3.5.35  # newest v3.5 patch
HELM_VERSION=v3.22.0  # newest v3 release
KIND_VERSION=v0.33.0  # newest kind, only built for the e2e tests (needs Docker)

KDAG_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/kdag"
# The key changes whenever a pinned version changes, so a bump builds into a
# fresh directory instead of mixing binaries of two releases.
KDAG_VERSION_KEY="k8s-${K8S_VERSION}_kwok-${KWOK_VERSION}_etcd-${ETCD_VERSION}_helm-${HELM_VERSION}"
KDAG_BIN="${KDAG_CACHE}/bin/${KDAG_VERSION_KEY}"
# KDAG_CLUSTER=other runs a second, independent cluster (its own kubeconfig).
KDAG_CLUSTER="${KDAG_CLUSTER:-kdag}"
if [[ "${KDAG_CLUSTER}" == kdag ]]; then
  KDAG_KUBECONFIG="${KDAG_CACHE}/kubeconfig"
else
  KDAG_KUBECONFIG="${KDAG_CACHE}/kubeconfig-${KDAG_CLUSTER}"
fi
