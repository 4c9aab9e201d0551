// The cert-manager cainjector for the local cluster, run on the host (see infra/README.md): a
// controller-runtime manager around upstream's injectors (pkg/controller/cainjector). Only this
// command is ours, because upstream's cmd/cainjector is a separate module the Go module proxy
// does not serve.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiext "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	kscheme "k8s.io/client-go/kubernetes/scheme"
	apireg "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	cmscheme "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned/scheme"
	"github.com/cert-manager/cert-manager/pkg/controller/cainjector"
	logf "github.com/cert-manager/cert-manager/pkg/logs"
	"github.com/cert-manager/cert-manager/pkg/util"
)

func main() {
	// --kubeconfig is controller-runtime's own flag, read by ctrl.GetConfig.
	health := flag.String("health-probe-bind-address", "127.0.0.1:9403", "address of /healthz")
	flag.Parse()
	logf.InitLogs()
	log := logf.Log.WithName("cainjector")
	ctrl.SetLogger(log)
	log.Info("starting cert-manager cainjector", "version", util.AppVersion)

	restConfig, err := ctrl.GetConfig()
	if err != nil {
		fail(err)
	}
	scheme := runtime.NewScheme()
	utilruntime.Must(kscheme.AddToScheme(scheme))
	utilruntime.Must(cmscheme.AddToScheme(scheme))
	utilruntime.Must(apiext.AddToScheme(scheme))
	utilruntime.Must(apireg.AddToScheme(scheme))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Alive from the start, while it waits for the chart below.
	server := &http.Server{Addr: *health, ReadHeaderTimeout: 30 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })}
	go func() {
		if err := server.ListenAndServe(); err != http.ErrServerClosed {
			fail(err)
		}
	}()
	// Certificates as a CA source need cert-manager's CRDs, which the chart installs, maybe
	// long after the cluster started: wait for them, as upstream does (for five minutes only).
	direct, err := client.New(restConfig, client.Options{Scheme: scheme})
	if err != nil {
		fail(err)
	}
	crd := types.NamespacedName{Name: "certificates.cert-manager.io"}
	err = wait.PollUntilContextCancel(ctx, 2*time.Second, true, func(ctx context.Context) (bool, error) {
		err := direct.Get(ctx, crd, &apiext.CustomResourceDefinition{})
		if err != nil {
			log.V(1).Info("waiting for the Certificate CRD", "error", err.Error())
		}
		return err == nil, nil
	})
	if err != nil {
		return // stopped while waiting
	}
	mgr, err := ctrl.NewManager(util.RestConfigWithUserAgent(restConfig, "cainjector"), ctrl.Options{
		Scheme: scheme,
		// As upstream: Secrets are read directly, only their metadata is watched.
		Client:  client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}}},
		Metrics: metricsserver.Options{BindAddress: "0"},
	})
	if err != nil {
		fail(err)
	}
	err = cainjector.RegisterAllInjectors(ctx, mgr, cainjector.SetupOptions{
		EnableCertificatesDataSource: true,
		EnabledReconcilersFor: map[string]bool{
			cainjector.MutatingWebhookConfigurationName:   true,
			cainjector.ValidatingWebhookConfigurationName: true,
			cainjector.APIServiceName:                     true,
			cainjector.CustomResourceDefinitionName:       true,
		},
	})
	if err != nil {
		fail(err)
	}
	if err := mgr.Start(ctx); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "error:", err)
	os.Exit(1)
}
