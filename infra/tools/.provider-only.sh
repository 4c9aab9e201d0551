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
mark() { echo "$2" >"$tools/.built-$1"; }

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
# provider NAMESPACE TYPE MODULE VERSION H1SUM: build a provider into the mirror, under both registry
# host names, so OpenTofu (registry.opentofu.org) and Terraform (registry.terraform.io) find it.
provider() {
  local namespace="$1" type="$2" module="$3" version="$4" sum="$5"
  built "provider-$type" "$version" && return
  echo "building provider $namespace/$type $version"
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
