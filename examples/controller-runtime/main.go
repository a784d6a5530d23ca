// Command controller-runtime-example is a controller-runtime manager whose
// controllers run only while this process leads, elected by Leasehold
// instead of controller-runtime's built-in leader election.
//
// Each term builds a fresh manager and runs it under the leadership context:
// a manager (and its controllers) can be started only once, and a fresh one
// after a lost term starts from clean caches. When leadership ends, the
// manager stops before the Lease is released, so two terms' controllers never
// run at once. The reconciler stamps each ConfigMap with the term's fencing
// token, the way a real controller would pass it to what it writes.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/leasehold/leasehold/election"
)

// Annotation is what the reconciler writes: "<identity>/<fencing token>".
const Annotation = "example.leasehold.io/reconciled-by"

// Options configure Run.
type Options struct {
	Namespace, Lease, Identity string
	LeaseDuration              time.Duration
	RenewDeadline, RetryPeriod time.Duration
	// ReleaseOnCancel, if false, leaves the lease to expire (a crash).
	ReleaseOnCancel bool
}

// Run campaigns and runs the manager while leading, until ctx ends.
func Run(ctx context.Context, cfg *rest.Config, o Options) error {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	e, err := election.New(election.Config{
		Leases: cs.CoordinationV1(), Namespace: o.Namespace, Name: o.Lease, Identity: o.Identity,
		LeaseDuration: o.LeaseDuration, RenewDeadline: o.RenewDeadline, RetryPeriod: o.RetryPeriod,
		KeepLeaseOnCancel: !o.ReleaseOnCancel,
	})
	if err != nil {
		return err
	}
	return e.Run(ctx, func(ctx context.Context) error {
		token, _ := election.TokenFrom(ctx)
		mgr, err := ctrl.NewManager(cfg, ctrl.Options{
			LeaderElection: false, // Leasehold decides who runs
			Metrics:        server.Options{BindAddress: "0"},
		})
		if err != nil {
			return err
		}
		r := &reconciler{Client: mgr.GetClient(), stamp: fmt.Sprintf("%s/%s", e.Identity(), token)}
		if err := ctrl.NewControllerManagedBy(mgr).For(&corev1.ConfigMap{}).Named("stamp").
			// Each term has a fresh manager; controller names are checked
			// process-wide, and the previous term's controller has stopped.
			WithOptions(controller.Options{SkipNameValidation: ptr.To(true)}).
			Complete(r); err != nil {
			return err
		}
		// Start returns when ctx (the leadership context) ends, after the
		// controllers have stopped; only then does Run release.
		if err := mgr.Start(ctx); err != nil && ctx.Err() == nil {
			return err
		}
		return nil
	})
}

// reconciler stamps ConfigMaps labelled example.leasehold.io/stamp=true.
type reconciler struct {
	client.Client
	stamp string
}

func (r *reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var cm corev1.ConfigMap
	if err := r.Get(ctx, req.NamespacedName, &cm); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if cm.Labels["example.leasehold.io/stamp"] != "true" || cm.Annotations[Annotation] != "" {
		return ctrl.Result{}, nil
	}
	patch := client.MergeFrom(cm.DeepCopy())
	if cm.Annotations == nil {
		cm.Annotations = map[string]string{}
	}
	cm.Annotations[Annotation] = r.stamp
	return ctrl.Result{}, r.Patch(ctx, &cm, patch)
}

func main() {
	var o Options
	flag.StringVar(&o.Namespace, "namespace", "default", "namespace of the Lease")
	flag.StringVar(&o.Lease, "lease", "controller-runtime-example", "name of the Lease")
	flag.StringVar(&o.Identity, "identity", os.Getenv("POD_NAME"), "identity (default: POD_NAME, else hostname)")
	flag.DurationVar(&o.LeaseDuration, "lease-duration", 15*time.Second, "LeaseDuration")
	flag.DurationVar(&o.RenewDeadline, "renew-deadline", 10*time.Second, "RenewDeadline")
	flag.DurationVar(&o.RetryPeriod, "retry-period", 2*time.Second, "RetryPeriod")
	flag.Parse()
	o.ReleaseOnCancel = true
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := ctrl.GetConfig()
	if err == nil {
		err = Run(ctx, cfg, o)
	}
	if err != nil && ctx.Err() == nil {
		fmt.Fprintln(os.Stderr, "controller-runtime-example:", err)
		os.Exit(1)
	}
}
