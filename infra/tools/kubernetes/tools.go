//go:build tools

// The Kubernetes control plane (kube-apiserver, kube-controller-manager, kube-scheduler), built
// from the k8s.io/kubernetes module the Go module proxy serves. That module's go.mod points each
// k8s.io staging module at a local directory, so this module requires it and maps every staging
// module to its published release instead (the replace directives in go.mod). The blank imports
// keep `go mod tidy` from dropping what build-tools.sh builds with `go build k8s.io/kubernetes/cmd/...`.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver/app"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	_ "k8s.io/kubernetes/cmd/kube-scheduler/app"
)
