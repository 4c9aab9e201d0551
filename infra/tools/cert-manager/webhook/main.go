// The cert-manager webhook for the local cluster, run on the host (see infra/README.md): the
// upstream server and flags (pkg/webhook/options), only the command around them is ours, because
// upstream's cmd/webhook is a separate module that the Go module proxy does not serve.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/cert-manager/cert-manager/internal/webhook"
	logf "github.com/cert-manager/cert-manager/pkg/logs"
	"github.com/cert-manager/cert-manager/pkg/util"
	"github.com/cert-manager/cert-manager/pkg/webhook/options"
)

func main() {
	cfg, err := options.NewWebhookConfiguration()
	if err != nil {
		fail(err)
	}
	flags := pflag.NewFlagSet("cert-manager-webhook", pflag.ExitOnError)
	options.AddConfigFlags(flags, cfg)
	_ = flags.Parse(os.Args[1:])
	logf.InitLogs()
	if err := logf.ValidateAndApply(&cfg.Logging); err != nil {
		fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := logf.Log.WithName("webhook")
	log.Info("starting cert-manager webhook", "version", util.AppVersion)
	srv, err := webhook.NewCertManagerWebhookServer(log, *cfg)
	if err != nil {
		fail(err)
	}
	if err := srv.Run(logf.NewContext(ctx, log)); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "error:", err)
	os.Exit(1)
}
