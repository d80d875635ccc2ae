#!/usr/bin/env bash
# Build the local control plane kdag tests against, from Go modules, into a
# cache outside the clone:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/kdag/bin/<version-key>/
# Components: kube-apiserver, kube-controller-manager, kube-scheduler, kubectl
# (k8s.io/kubernetes), kwok and kwokctl (sigs.k8s.io/kwok), etcd
# (go.etcd.io/etcd/server/v3) and helm (helm.sh/helm/v3); with the argument
# "kubelet", also the kubelet (k8s.io/kubernetes/cmd/kubelet) for the real
# node (hack/real-node-up.sh); with "kind", also kind (sigs.k8s.io/kind).
#
# Idempotent: a component whose binaries are already in the cache is not
# rebuilt, so a warm run only prints the versions (seconds). Cold, on 2 cores,
# it takes about 22 minutes (docs/local-cluster.md).
#
# Prints the binary directory as its last line (and only that on stdout).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# Pinned versions and cache paths.
# shellcheck source=hack/cluster-env.sh
source "${HERE}/cluster-env.sh"

# Never let the go command fetch a different toolchain, and never stamp VCS
# info of whatever directory we happen to be in.
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0
SRC_DIR="${KDAG_CACHE}/src"
mkdir -p "${KDAG_BIN}" "${SRC_DIR}"

log() { printf '[cluster-bins] %s\n' "$*" >&2; }

# Two builds at once (make cluster-bins and a test session, say) would each
# compile everything; the second waits for the first and then finds it done.
exec 9>"${KDAG_CACHE}/build.lock"
if ! flock -n 9; then
  log "another build is running; waiting for it"
  flock 9
fi

# have NAME... : true when every named binary is already in the cache.
have() {
  local b
  for b in "$@"; do [[ -x "${KDAG_BIN}/$b" ]] || return 1; done
}

# wrapper_module DIR MODULE VERSION [REPLACE_BLOCK]
# Writes a throwaway main module that requires MODULE@VERSION. We build from a
# wrapper (not `go install pkg@version`) because go install refuses modules
# whose go.mod has replace directives, which k8s.io/kubernetes and etcd have.
wrapper_module() {
  local dir=$1 module=$2 version=$3 replace=${4:-}
  mkdir -p "$dir"
  cat >"$dir/go.mod" <<EOF
module kdag.local/clusterbins/$(basename "$dir")

go 1.24.0

require $module $version
$replace
EOF
  : >"$dir/go.sum"
}

# component KEY MODULE VERSION LDFLAGS PKG...
# Builds the main packages PKG... (all from MODULE at VERSION) in the wrapper
# module ${SRC_DIR}/KEY-VERSION and moves the binaries into the cache. When
# REPLACE is set, it is appended to the wrapper's go.mod.
component() {
  local key=$1 module=$2 version=$3 ldflags=$4 pkg tmp
  shift 4
  local dir="${SRC_DIR}/${key}-${version}"
  log "building ${key} ${version}"
  wrapper_module "$dir" "$module" "$version" "${REPLACE:-}"
  # `go get pkg@VERSION` fills go.sum with exactly what the packages import
  # (and raises the go directive to what the dependency needs). The explicit
  # @VERSION matters: a bare `go get pkg` would upgrade to the newest release.
  for pkg in "$@"; do (cd "$dir" && go get "${pkg}@${version}"); done
  # Build into a temporary directory and move at the end, so an interrupted
  # build never leaves a half-written binary that `have` would accept.
  tmp=$(mktemp -d "${KDAG_BIN}/.tmp.XXXXXX")
  (cd "$dir" && go build -trimpath -ldflags "-s -w ${ldflags}" -o "$tmp/" "$@")
  mv "$tmp"/* "${KDAG_BIN}/"
  rmdir "$tmp"
}

build_kwok() {
  have kwok kwokctl && return 0
  # consts.Version is what `kwok --version` prints; KubeVersion is the default
  # kube version kwokctl assumes (it must match the binaries we hand it).
  component kwok sigs.k8s.io/kwok "${KWOK_VERSION}" \
    "-X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v} -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=${K8S_VERSION}" \
    sigs.k8s.io/kwok/cmd/kwok sigs.k8s.io/kwok/cmd/kwokctl
}

build_etcd() {
  have etcd && return 0
  # server/v3's main package is the etcd binary; go names it "server".
  component etcd go.etcd.io/etcd/server/v3 "${ETCD_VERSION}" \
    "-X go.etcd.io/etcd/api/v3/version.GitSHA=${ETCD_VERSION}" \
    go.etcd.io/etcd/server/v3
  mv "${KDAG_BIN}/server" "${KDAG_BIN}/etcd"
}

# kubernetes_replace: k8s.io/kubernetes requires its staging modules as
# v0.0.0 and points them at ./staging with replace directives, which do not
# apply to a dependency. This prints a replace block re-pointing every staging
# module at its published v0.X.Y tag instead; the list is read from
# kubernetes' own go.mod so it can never drift.
kubernetes_replace() {
  local gomod staging m replace
  gomod=$(go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" |
    sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
  staging=$(sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$gomod")
  [[ -n "$staging" ]] || { log "no staging modules found in $gomod"; exit 1; }
  replace="replace ("$'\n'
  for m in $staging; do replace+="	$m => $m v0.${K8S_VERSION#v1.}"$'\n'; done
  replace+=")"
  printf '%s' "$replace"
}

# kubernetes_ldflags: the variables Kubernetes' own hack/lib/version.sh
# stamps, so that `--version` reports ${K8S_VERSION}.
kubernetes_ldflags() {
  local major minor pkg ldflags=""
  major=${K8S_VERSION#v}
  major=${major%%.*}
  minor=${K8S_VERSION#v*.}
  minor=${minor%%.*}
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X ${pkg}.gitVersion=${K8S_VERSION}"
    ldflags+=" -X ${pkg}.gitMajor=${major} -X ${pkg}.gitMinor=${minor}"
    ldflags+=" -X ${pkg}.gitTreeState=clean -X ${pkg}.buildDate=1970-01-01T00:00:00Z"
  done
  printf '%s' "$ldflags"
}

build_kubernetes() {
  have kube-apiserver kube-controller-manager kube-scheduler kubectl && return 0
  # One `go build` for all four: they share most packages and link in parallel.
  REPLACE="$(kubernetes_replace)" component kubernetes k8s.io/kubernetes "${K8S_VERSION}" \
    "$(kubernetes_ldflags)" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubectl
}

# helm's release build stamps, besides its version, its git commit and the Kubernetes
# version it assumes when no cluster is asked (`helm template` without --kube-version, and
# `helm lint`'s deprecation checks): the client-go minor it is built with, as helm's own
# Makefile derives it. Without them it assumes 1.20 and refuses charts that need newer.
# A helm built without them (an older cache) is rebuilt.
HELM_STAMP="${KDAG_BIN}/.helm-release-ldflags"
build_helm() {
  have helm && [[ -e "$HELM_STAMP" ]] && return 0
  local dir="${SRC_DIR}/helm-${HELM_VERSION}" commit client_go major minor
  wrapper_module "$dir" helm.sh/helm/v3 "${HELM_VERSION}"
  (cd "$dir" && go get "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}")
  # Empty when the module proxy records no origin (not every proxy does).
  commit=$(cd "$dir" && go mod download -json "helm.sh/helm/v3@${HELM_VERSION}" |
    sed -n 's/.*"Hash": "\([0-9a-f]*\)".*/\1/p')
  client_go=$(cd "$dir" && go list -m -f '{{.Version}}' k8s.io/client-go) # v0.34.2
  client_go=${client_go#v}
  major=$((${client_go%%.*} + 1))
  minor=$(cut -d. -f2 <<<"$client_go")
  rm -f "${KDAG_BIN}/helm"
  component helm helm.sh/helm/v3 "${HELM_VERSION}" \
    "-X helm.sh/helm/v3/internal/version.version=${HELM_VERSION} \
     -X helm.sh/helm/v3/internal/version.gitCommit=${commit} \
     -X helm.sh/helm/v3/internal/version.gitTreeState=clean \
     -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=${major} \
     -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=${minor} \
     -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=${major} \
     -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=${minor}" \
    helm.sh/helm/v3/cmd/helm
  touch "$HELM_STAMP"
}

# Only on request (`build-cluster-bins.sh kind`): the e2e tests need it, and
# only where a Docker engine runs.
# Only on request (`build-cluster-bins.sh kubelet`): the real node
# (hack/real-node-up.sh) needs it; the KWOK cluster does not. Its own wrapper
# module (kubelet-VERSION), so the four-binary build above is untouched.
# CGO_ENABLED=0 as for the others: upstream releases the kubelet static too.
build_kubelet() {
  have kubelet && return 0
  REPLACE="$(kubernetes_replace)" component kubelet k8s.io/kubernetes "${K8S_VERSION}" \
    "$(kubernetes_ldflags)" k8s.io/kubernetes/cmd/kubelet
}

build_kind() {
  have kind && return 0
  component kind sigs.k8s.io/kind "${KIND_VERSION}" "" sigs.k8s.io/kind
}

# timed NAME FUNCTION: run a build step and log how long it took.
timed() {
  local t=$SECONDS
  "$2"
  log "$1: $((SECONDS - t))s"
}

start=$SECONDS
# Small, quick components first so kwokctl is usable early; kubernetes is the
# long one.
timed kwok build_kwok
timed etcd build_etcd
timed kubernetes build_kubernetes
timed helm build_helm
if [[ " $* " == *" kubelet "* ]]; then timed kubelet build_kubelet; fi
if [[ " $* " == *" kind "* ]]; then timed kind build_kind; fi
log "done in $((SECONDS - start))s"

# first_line CMD... : the first line of CMD's output, "?" if it fails. (Not
# `CMD | head -1`: head closing the pipe early kills CMD with SIGPIPE, which
# pipefail would turn into a failure of this script.)
first_line() {
  local out
  out=$("$@" 2>/dev/null) || out="?"
  printf '%s' "${out%%$'\n'*}"
}

# Report what is in the cache, so a warm run shows what you have.
{
  printf '%-24s %8s  %s\n' binary size version
  for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kwok kwokctl helm kind; do
    [[ -x "${KDAG_BIN}/$b" ]] || continue
    case $b in
      kubectl) v=$(first_line "${KDAG_BIN}/$b" version --client) ;;
      helm) v=$(first_line "${KDAG_BIN}/$b" version --short) ;;
      kind) v=$(first_line "${KDAG_BIN}/$b" version) ;;
      *) v=$(first_line "${KDAG_BIN}/$b" --version) ;;
    esac
    printf '%-24s %7sM  %s\n' "$b" "$(($(stat -c %s "${KDAG_BIN}/$b") / 1048576))" "$v"
  done
} >&2
echo "${KDAG_BIN}"
