// Replaces Vault's command/commands_min.go in build-tools.sh's copy of its module: the `minimal`
// build's storage (raft, inmem) plus the file storage the local cluster's Vault keeps its data in.

//go:build minimal

package command

import (
	_ "github.com/hashicorp/vault/helper/builtinplugins"
	physFile "github.com/hashicorp/vault/sdk/physical/file"
)

func extendAddonHandlers(handlers *vaultHandlers) {
	handlers.physicalBackends["file"] = physFile.NewFileBackend
}
