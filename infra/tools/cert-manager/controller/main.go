// The cert-manager controller for the local cluster, run on the host (see infra/README.md):
// upstream's controllers (pkg/controller/...) and their ContextFactory, started as upstream's
// cmd/controller starts them. Only this command is ours, because cmd/controller is a separate
// module that the Go module proxy does not serve. It carries the controllers the local
// platform's issuers need (CA, self-signed, ACME account registration, the Certificate
// lifecycle, approval); ACME orders and challenges, whose DNS providers are most of upstream's
// build, cannot be solved on a loopback cluster and are left out, as are Vault and Venafi.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	controllerpkg "github.com/cert-manager/cert-manager/pkg/controller"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/acme"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	_ "github.com/cert-manager/cert-manager/pkg/controller/clusterissuers"
	_ "github.com/cert-manager/cert-manager/pkg/controller/issuers"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/acme"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
	logf "github.com/cert-manager/cert-manager/pkg/logs"
	"github.com/cert-manager/cert-manager/pkg/util"
)

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the cluster")
	clusterResourceNamespace := flag.String("cluster-resource-namespace", "cert-manager",
		"namespace of the Secrets that ClusterIssuers refer to")
	healthz := flag.String("healthz-listen-address", "127.0.0.1:9403", "address of /healthz")
	flag.Parse()
	logf.InitLogs()
	log := logf.Log.WithName("controller")
	log.Info("starting cert-manager controller", "version", util.AppVersion)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx = logf.NewContext(ctx, log)
	factory, err := controllerpkg.NewContextFactory(ctx, controllerpkg.ContextOptions{
		Kubeconfig:         *kubeconfig,
		KubernetesAPIQPS:   20,
		KubernetesAPIBurst: 50,
		IssuerOptions:      controllerpkg.IssuerOptions{ClusterResourceNamespace: *clusterResourceNamespace},
		ACMEOptions: controllerpkg.ACMEOptions{
			// Upstream's defaults; no solver pod is ever made (no challenge controller here).
			HTTP01SolverImage:                 "quay.io/jetstack/cert-manager-acmesolver:" + util.AppVersion,
			HTTP01SolverResourceRequestCPU:    resource.MustParse("10m"),
			HTTP01SolverResourceRequestMemory: resource.MustParse("64Mi"),
			HTTP01SolverResourceLimitsCPU:     resource.MustParse("100m"),
			HTTP01SolverResourceLimitsMemory:  resource.MustParse("64Mi"),
			DNS01CheckAuthoritative:           true,
			DNS01CheckRetryPeriod:             10 * time.Second,
		},
		CertificateOptions: controllerpkg.CertificateOptions{
			CopiedAnnotationPrefixes: []string{"*", "-kubectl.kubernetes.io/", "-fluxcd.io/", "-argocd.argoproj.io/"},
		},
		SchedulerOptions: controllerpkg.SchedulerOptions{MaxConcurrentChallenges: 60},
	})
	if err != nil {
		fail(err)
	}

	var running sync.WaitGroup
	for name, construct := range controllerpkg.Known() {
		controller, err := construct(factory)
		if err != nil {
			fail(fmt.Errorf("controller %s: %w", name, err))
		}
		running.Add(1)
		go func() {
			defer running.Done()
			log.Info("starting controller", "controller", name)
			if err := controller.Run(5, ctx); err != nil {
				log.Error(err, "controller failed", "controller", name)
				stop()
			}
		}()
	}
	// The informers the controllers registered, as upstream starts them once all are built;
	// before the chart's CRDs exist their lists fail and are retried, and the controllers wait.
	informers, err := factory.Build()
	if err != nil {
		fail(err)
	}
	informers.KubeSharedInformerFactory.Start(ctx.Done())
	informers.SharedInformerFactory.Start(ctx.Done())
	informers.HTTP01ResourceMetadataInformersFactory.Start(ctx.Done())

	server := &http.Server{Addr: *healthz, ReadHeaderTimeout: 30 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })}
	go func() {
		if err := server.ListenAndServe(); err != http.ErrServerClosed {
			log.Error(err, "healthz server failed")
			stop()
		}
	}()
	running.Wait()
	_ = server.Shutdown(context.Background())
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "error:", err)
	os.Exit(1)
}
