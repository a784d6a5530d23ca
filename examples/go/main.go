// Command example is a small leader-elected Go service built on
// election.Elector: every replica serves /healthz, /readyz and /metrics; only
// the leader does the work, with the term's fencing token.
//
//	go run ./examples/go -lease example -namespace default
//
// It uses the kubeconfig as kubectl does ($KUBECONFIG, ~/.kube/config) or,
// in a pod, its service account, which needs the Role in deploy/base/role.yaml.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/leasehold/leasehold/election"
	"github.com/leasehold/leasehold/lease"
)

func main() {
	if err := run(); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "example:", err)
		os.Exit(1)
	}
}

func run() error {
	leaseName := flag.String("lease", "example", "name of the Lease")
	namespace := flag.String("namespace", os.Getenv("POD_NAMESPACE"), "namespace of the Lease (default: $POD_NAMESPACE, else the kubeconfig's)")
	identity := flag.String("identity", "", "identity of this replica (default: $POD_NAME, else the hostname)")
	addr := flag.String("http", ":8080", "address for /healthz, /readyz and /metrics")
	flag.Parse()

	// SIGTERM ends ctx: Run stops the work, releases the lease and returns,
	// so a follower takes over within milliseconds.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	kc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(clientcmd.NewDefaultClientConfigLoadingRules(), &clientcmd.ConfigOverrides{})
	cfg, err := kc.ClientConfig()
	if err != nil {
		return err
	}
	if *namespace == "" {
		if *namespace, _, err = kc.Namespace(); err != nil {
			return err
		}
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	reg := prometheus.NewRegistry()
	e, err := election.New(election.Config{
		Leases:     cs.CoordinationV1(),
		Namespace:  *namespace,
		Name:       *leaseName,
		Identity:   *identity,
		Logger:     logr.FromSlogHandler(log.Handler()),
		Registerer: reg,
		// Timings: the defaults (15s/10s/2s) match client-go's; see docs/timing.md.
	})
	if err != nil {
		return err
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := e.Check(r); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !e.IsLeader() {
			http.Error(w, "not the leader", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "leader")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	srvErr := make(chan error, 1)
	go func() {
		err := srv.ListenAndServe()
		if !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server failed; stopping", "addr", *addr, "err", err)
			stop()
		}
		srvErr <- err
	}()
	defer func() {
		_ = srv.Close()
		<-srvErr
	}()

	// Run campaigns until ctx ends; it calls work each time this replica
	// wins and waits for it to return before releasing.
	return e.Run(ctx, func(ctx context.Context) error {
		token, _ := election.TokenFrom(ctx)
		log.Info("leading", "lease", *namespace+"/"+*leaseName, "identity", e.Identity(), "token", token)
		return work(ctx, log, token)
	})
}

// work is the leader-only work. It must return when ctx ends: that is the
// end of the term, strictly before any other replica can lead. Hand token to
// whatever you write to, so that a paused ex-leader's late writes are
// rejected.
func work(ctx context.Context, log *slog.Logger, token lease.Token) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			log.Info("stopped leading", "cause", context.Cause(ctx))
			return nil
		case <-tick.C:
			log.Info("working", "token", token)
		}
	}
}
