// kubectl, built from the k8s.io/kubectl module the Go module proxy serves: the same entry point
// as Kubernetes' own cmd/kubectl (whose k8s.io/kubernetes module cannot be built from the proxy:
// its go.mod replaces the staging modules with local directories).
package main

import (
	_ "k8s.io/client-go/plugin/pkg/client/auth"
	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"
)

func main() {
	if err := cli.RunNoErrOutput(cmd.NewDefaultKubectlCommand()); err != nil {
		util.CheckErr(err)
	}
}
