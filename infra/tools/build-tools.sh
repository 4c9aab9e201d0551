#!/usr/bin/env bash
# Builds the provisioning tools from the Go module proxy into .tools/ (idempotent): OpenTofu,
# Helm, kubectl and the Terraform provider plugins, the providers into a filesystem mirror that
# .tools/tofu.rc (a CLI config file) points OpenTofu and Terraform at. Nothing is downloaded from
# a release site: every binary is compiled from the module the proxy serves, at the version pinned
# in infra/tools/versions.env. A tool already built at its pinned version is left alone.
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
# shellcheck source=versions.env
source "$repo/infra/tools/versions.env"
tools="$repo/.tools"
bin="$tools/bin"
mirror="$tools/providers"
mkdir -p "$bin" "$mirror"

command -v go >/dev/null || { echo "error: go not found: install Go 1.26 (https://go.dev/doc/install)" >&2; exit 1; }
export GOFLAGS="-buildvcs=false -trimpath" CGO_ENABLED=0

# built NAME VERSION: true when .tools/ holds NAME at VERSION already.
built() { [ "$(cat "$tools/.built-$1" 2>/dev/null)" = "$2" ]; }
# building WHAT: say so (a tool's first line starts its clock); mark NAME VERSION: record it built,
# with how long it took (the first build on a fresh machine takes most of an hour).
building() { started="${started:-$SECONDS}"; echo "$(date +%T) building $*"; }
mark() {
  echo "$2" >"$tools/.built-$1"
  echo "$(date +%T) built $1 in $((SECONDS - started)) s"
  unset started
}

# module_dir MODULE@VERSION [H1SUM]: download the module through the proxy, print its source
# directory. Building inside it keeps upstream's own go.mod (replace directives, pinned versions).
# A module the checksum database does not list is verified against the h1: sum pinned here.
module_dir() {
  local json sum
  if [ -n "${2:-}" ]; then
    json="$(GONOSUMDB="${1%@*}" go mod download -json "$1")"
    sum="$(sed -n 's/^\t"Sum": "\(.*\)",$/\1/p' <<<"$json")"
    [ "$sum" = "$2" ] || { echo "error: $1 has checksum $sum, expected $2" >&2; return 1; }
  else
    json="$(go mod download -json "$1")"
  fi
  if grep -q '"Error"' <<<"$json"; then echo "error: $(grep '"Error"' <<<"$json")" >&2; return 1; fi
  sed -n 's/^\t"Dir": "\(.*\)",$/\1/p' <<<"$json"
}

if ! built tofu "$OPENTOFU_VERSION"; then
  building "OpenTofu $OPENTOFU_VERSION"
  src="$(module_dir "github.com/opentofu/opentofu@v$OPENTOFU_VERSION")"
  (cd "$src" && go build -ldflags "-s -w -X github.com/opentofu/opentofu/version.dev=no" \
    -o "$bin/tofu" ./cmd/tofu)
  mark tofu "$OPENTOFU_VERSION"
fi

# Helm's Makefile stamps the Kubernetes version of its client-go into the binary; without it
# `helm template` and `helm lint` assume v1.20 and refuse every chart whose kubeVersion needs more.
# The stamp carries the build recipe, so a Helm built the old way is rebuilt.
helm_stamp="$HELM_VERSION+kube-ldflags"
if ! built helm "$helm_stamp"; then
  building "Helm $HELM_VERSION"
  src="$(module_dir "helm.sh/helm/v3@v$HELM_VERSION")"
  # client-go v0.MINOR.PATCH is Kubernetes v1.MINOR, as the Makefile computes it.
  IFS=. read -r client_go_major kube_minor _ <<<"$(cd "$src" && go list -m -f '{{.Version}}' k8s.io/client-go)"
  kube_major=$(( ${client_go_major#v} + 1 ))
  kube=""
  for pkg in chartutil lint/rules; do
    kube+=" -X helm.sh/helm/v3/pkg/$pkg.k8sVersionMajor=$kube_major -X helm.sh/helm/v3/pkg/$pkg.k8sVersionMinor=$kube_minor"
  done
  (cd "$src" && go build -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION $kube" \
    -o "$bin/helm" ./cmd/helm)
  mark helm "$helm_stamp"
fi

if ! built kubectl "$KUBECTL_VERSION"; then
  building "kubectl $KUBECTL_VERSION"
  (cd "$repo/infra/tools/kubectl" && go build -ldflags "-s -w -X k8s.io/client-go/pkg/version.gitVersion=v1.${KUBECTL_VERSION#0.} -X k8s.io/component-base/version.gitVersion=v1.${KUBECTL_VERSION#0.}" -o "$bin/kubectl" .)
  mark kubectl "$KUBECTL_VERSION"
fi

# The local Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler and kwok (simulated nodes and pods). See infra/README.md.

# pinned_in DIR MODULE VERSION: fail unless DIR/go.mod requires MODULE at VERSION (versions.env
# is the one place a version is changed; the go.mod must follow it).
pinned_in() {
  grep -qE "^\s*(require )?$2 v$3\$" "$1/go.mod" ||
    { echo "error: $1/go.mod does not require $2 v$3 (versions.env): update it, then go mod tidy" >&2; return 1; }
}

if ! built etcd "$ETCD_VERSION"; then
  building "etcd $ETCD_VERSION"
  pinned_in "$repo/infra/tools/etcd" go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
  (cd "$repo/infra/tools/etcd" && go build -ldflags "-s -w" -o "$bin/etcd" .)
  mark etcd "$ETCD_VERSION"
fi

# Without Kubernetes' own version ldflags the servers report v0.0.0-master and Helm refuses
# every chart with a kubeVersion constraint.
if ! built kubernetes "$KUBERNETES_VERSION"; then
  pinned_in "$repo/infra/tools/kubernetes" k8s.io/kubernetes "$KUBERNETES_VERSION"
  k8s_ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    k8s_ldflags+=" -X $pkg.gitVersion=v$KUBERNETES_VERSION -X $pkg.gitMajor=${KUBERNETES_VERSION%%.*}"
    k8s_ldflags+=" -X $pkg.gitMinor=$(cut -d. -f2 <<<"$KUBERNETES_VERSION") -X $pkg.gitTreeState=clean"
  done
  for cmd in kube-apiserver kube-controller-manager kube-scheduler; do
    building "$cmd $KUBERNETES_VERSION"
    (cd "$repo/infra/tools/kubernetes" && go build -ldflags "$k8s_ldflags" -o "$bin/$cmd" "k8s.io/kubernetes/cmd/$cmd")
  done
  mark kubernetes "$KUBERNETES_VERSION"
fi

# kwok runs only with Stage objects; the module ships the upstream ones, kept beside the binary.
if ! built kwok "$KWOK_VERSION"; then
  building "kwok $KWOK_VERSION"
  src="$(module_dir "sigs.k8s.io/kwok@v$KWOK_VERSION")"
  (cd "$src" && go build -ldflags "-s -w" -o "$bin/kwok" ./cmd/kwok)
  # Nodes Ready with heartbeats, pods Running/Ready/Completed, PVCs of class kwok-volume bound.
  # The failures the tests need are the project's own stages (infra/local/kwok/).
  rm -rf "$tools/kwok-stages" && mkdir -p "$tools/kwok-stages"
  for stage in node/fast node/heartbeat pod/fast volume/fast; do
    grep -l '^kind: Stage$' "$src/kustomize/stage/$stage"/*.yaml | xargs cp -t "$tools/kwok-stages/"
  done
  mark kwok "$KWOK_VERSION"
fi

# Host stand-ins of the local cluster (infra/README.md): cert-manager's processes, which the API
# server must really call (its webhook) and which must really issue certificates. Upstream's
# cmd/* are separate modules the proxy does not serve, so infra/tools/cert-manager holds the
# commands around upstream's packages; the version ldflag is upstream's.
if ! built cert-manager "$CERT_MANAGER_VERSION"; then
  pinned_in "$repo/infra/tools/cert-manager" github.com/cert-manager/cert-manager "$CERT_MANAGER_VERSION"
  for cmd in controller webhook cainjector; do
    building "cert-manager-$cmd $CERT_MANAGER_VERSION"
    (cd "$repo/infra/tools/cert-manager" && go build \
      -ldflags "-s -w -X github.com/cert-manager/cert-manager/pkg/util.AppVersion=v$CERT_MANAGER_VERSION" \
      -o "$bin/cert-manager-$cmd" "./$cmd")
  done
  mark cert-manager "$CERT_MANAGER_VERSION"
fi

# Host stand-ins of the local cluster (infra/README.md): workloads kwok cannot run that must
# really answer. Vault: the plain `vault` binary, built in a copy of its module. The module zip
# leaves out its nested modules (api, sdk) that its go.mod replaces with ./api and ./sdk, so the
# copy's go.mod drops those replace directives: the api and sdk it requires, from the proxy.
# That sdk (v0.21.0) differs from the release's in-tree copy in two signatures (the activation
# callback's third argument; RestorePolicy returns no key name): three lines adapt the callers.
# Built with upstream's `minimal` tag (no cloud auth methods, secrets engines, database plugins
# or storage backends: a quarter fewer packages to compile), plus what the platform uses from
# the full build, the Kubernetes auth method and file storage (infra/tools/vault-minimal).
vault_stamp="$VAULT_VERSION+minimal-kubernetes-file"
if ! built vault "$vault_stamp"; then
  building "Vault $VAULT_VERSION"
  src="$(module_dir "github.com/hashicorp/vault@v$VAULT_VERSION")"
  work="$tools/vault-build"
  rm -rf "$work" && cp -r "$src" "$work" && chmod -R u+w "$work"
  sed -i -E '/^replace github.com\/hashicorp\/vault\/(api|sdk)/d' "$work/go.mod"
  sed -i 's/ActivationFunc: iStore.activateDeduplication,/ActivationFunc: func(ctx context.Context, req *logical.Request, _ string) error { return iStore.activateDeduplication(ctx, req) },/' \
    "$work/vault/identity_store.go"
  sed -i 's/b.idStoreBackend.ActivationFunc(ctx, nil)/b.idStoreBackend.ActivationFunc(ctx, nil, "")/' \
    "$work/vault/logical_system_activation_flags.go"
  sed -i 's/\trestoredKeyName, err := b.lm.RestorePolicy(/\trestoredKeyName, err := keyName, b.lm.RestorePolicy(/' \
    "$work/builtin/logical/transit/path_restore.go"
  for f in vault/identity_store.go vault/logical_system_activation_flags.go \
    builtin/logical/transit/path_restore.go; do
    ! cmp -s "$src/$f" "$work/$f" ||
      { echo "error: Vault's $f changed upstream: update build-tools.sh" >&2; exit 1; }
  done
  grep -q '^func extendAddonPlugins(_ \*registry) {' "$work/helper/builtinplugins/registry_min.go" &&
    grep -q '^func extendAddonHandlers(\*vaultHandlers) {' "$work/command/commands_min.go" ||
    { echo "error: Vault's minimal build changed upstream: update infra/tools/vault-minimal" >&2; exit 1; }
  cp -r "$repo/infra/tools/vault-minimal/." "$work/"
  (cd "$work" && GOFLAGS="$GOFLAGS -mod=mod" go build -tags minimal -ldflags "-s -w" -o "$bin/vault" .)
  rm -rf "$work"
  mark vault "$vault_stamp"
fi

# External Secrets Operator's controller, built in a copy of its module with only the providers
# the platform uses registered (Vault; Kubernetes and fake) and the generators that need no cloud:
# upstream's register packages import every cloud's SDK (this release has no per-provider build
# tags), twice the packages to compile for code the local cluster never runs.
eso_stamp="$EXTERNAL_SECRETS_VERSION+vault-kubernetes-fake"
if ! built external-secrets "$eso_stamp"; then
  building "External Secrets Operator $EXTERNAL_SECRETS_VERSION"
  src="$(module_dir "github.com/external-secrets/external-secrets@v$EXTERNAL_SECRETS_VERSION")"
  work="$tools/external-secrets-build"
  rm -rf "$work" && cp -r "$src" "$work" && chmod -R u+w "$work"
  eso="github.com\/external-secrets\/external-secrets\/pkg"
  sed -i -E "/$eso\/provider\/(fake|kubernetes|vault)\"\$/!{/^\t_ \"$eso\/provider\//d}" \
    "$work/pkg/provider/register/register.go"
  sed -i -E "/$eso\/generator\/(fake|password|uuid|vault)\"\$/!{/^\t_ \"$eso\/generator\//d}" \
    "$work/pkg/generator/register/register.go"
  [ "$(grep -c '^\s_ "' "$work/pkg/provider/register/register.go")" = 3 ] ||
    { echo "error: External Secrets' provider register changed upstream: update build-tools.sh" >&2; exit 1; }
  (cd "$work" && go build -ldflags "-s -w" -o "$bin/external-secrets" .)
  rm -rf "$work"
  mark external-secrets "$eso_stamp"
fi

# provider NAMESPACE TYPE MODULE VERSION H1SUM: build a provider into the mirror, under both registry
# host names, so OpenTofu (registry.opentofu.org) and Terraform (registry.terraform.io) find it.
provider() {
  local namespace="$1" type="$2" module="$3" version="$4" sum="$5"
  built "provider-$type" "$version" && return
  building "provider $namespace/$type $version"
  local src target
  src="$(module_dir "$module@v$version" "$sum")"
  target="$mirror/registry.opentofu.org/$namespace/$type/$version/linux_amd64"
  mkdir -p "$target"
  (cd "$src" && go build -ldflags "-s -w" -o "$target/terraform-provider-${type}_v$version" .)
  mkdir -p "$mirror/registry.terraform.io/$namespace/$type"
  ln -sfn "$mirror/registry.opentofu.org/$namespace/$type/$version" \
    "$mirror/registry.terraform.io/$namespace/$type/$version"
  mark "provider-$type" "$version"
}
provider hetznercloud hcloud github.com/hetznercloud/terraform-provider-hcloud \
  "$HCLOUD_PROVIDER_VERSION" "$HCLOUD_PROVIDER_SUM"

# The CLI config: providers only from the local mirror, never from a registry.
cat >"$tools/tofu.rc" <<RC
provider_installation {
  filesystem_mirror {
    path = "$mirror"
  }
}
RC
echo "tools ready in $bin (providers: $mirror)"
