// Replaces Vault's helper/builtinplugins/registry_min.go in build-tools.sh's copy of its module:
// the `minimal` build's plugins plus the one the platform needs, the Kubernetes auth method.

//go:build minimal

package builtinplugins

import credKube "github.com/hashicorp/vault-plugin-auth-kubernetes"

func extendAddonPlugins(reg *registry) {
	reg.credentialBackends["kubernetes"] = credentialBackend{Factory: credKube.Factory}
}
