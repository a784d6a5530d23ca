package election

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"

	"github.com/leasehold/leasehold/internal/holder"
	"github.com/leasehold/leasehold/lease"
)

// Defaults, the same as client-go's recommended values so that mixed fleets
// agree.
const (
	DefaultLeaseDuration = holder.DefaultLeaseDuration
	DefaultRenewDeadline = holder.DefaultRenewDeadline
	DefaultRetryPeriod   = holder.DefaultRetryPeriod
	// MaxLeaseDuration is the longest LeaseDuration accepted.
	MaxLeaseDuration = holder.MaxLeaseDuration
)

// Config configures an Elector. The zero value of every optional field means
// its documented default; New never modifies the caller's Config.
type Config struct {
	// Leases is the API to use, usually clientset.CoordinationV1(). Required.
	Leases coordinationv1client.LeasesGetter
	// Namespace and Name of the Lease. Required; the Lease is created if it
	// does not exist.
	Namespace, Name string
	// Identity of this candidate, unique among candidates. Default: the
	// POD_NAME environment variable, else the hostname.
	Identity string

	// LeaseDuration is how long followers wait, after they last saw the lease
	// change, before they take it over: the crash-failover time. Whole
	// seconds, at most MaxLeaseDuration. Default 15s. Must exceed
	// RenewDeadline by the margin that covers clock-rate differences: the
	// fastest clock must run less than LeaseDuration/RenewDeadline times as
	// fast as the slowest (every clock within ±20% of real time with the
	// defaults).
	LeaseDuration time.Duration
	// RenewDeadline is how long the leader keeps leading without a successful
	// renewal, counted from when the last successful renewal was sent; the
	// leadership context ends then. Default: 2/3 of LeaseDuration (10s).
	RenewDeadline time.Duration
	// RetryPeriod is the interval between the leader's renewals (each one API
	// write) and between retries after transient errors. Followers do not
	// poll. Default: RenewDeadline/5 (2s).
	RetryPeriod time.Duration
	// KeepLeaseOnCancel leaves the lease to expire when Run's context ends,
	// instead of releasing it once the work has returned (the default), so
	// that followers take over only after LeaseDuration, as after a crash.
	KeepLeaseOnCancel bool
	// HandoffTimeout bounds a planned handoff: the leader stops its work,
	// keeps the lease and offers it to the named candidate; if that
	// candidate has not taken it within HandoffTimeout (a typo, a
	// candidate that is not running), the leader withdraws the offer and
	// resumes. Default: 2 × RetryPeriod.
	HandoffTimeout time.Duration

	// Pods, if set (usually clientset.CoreV1()), turns on pod-aware
	// takeover: this candidate publishes the container instance it runs in
	// (from the downward API variables POD_NAME, POD_NAMESPACE, POD_UID,
	// the literal LEASEHOLD_CONTAINER, and its own cgroup) when it acquires,
	// and as a follower watches the leader's Pod and takes over as soon as
	// the kubelet reports that exact instance terminated, instead of after
	// LeaseDuration. It needs get and watch on pods; without them, or
	// outside a Pod, the election behaves exactly as without Pods (said
	// once in the log and in leasehold_election_pod_aware). See package
	// podwitness's documentation for what counts as evidence.
	Pods corev1client.PodsGetter
	// PodAwareReport, if set, is told once per part of pod-aware takeover
	// whether it is on: part "publish" when Run has found (or failed to
	// find) this process's instance, part "witness" when reading the
	// leader's Pod fails for good (RBAC). detail says what is published, or
	// why the part is off. It runs on Run's goroutines; it must not block.
	PodAwareReport func(part string, on bool, detail string)
	// Instance, if set with Pods, is the container instance this process
	// runs in (podwitness.Detect finds it), published instead of detecting
	// it when Run starts.
	Instance *lease.Instance

	// Successor, if set, is asked whom to hand the lease to when Run's
	// context ends while this candidate leads (a shutdown: SIGTERM at a pod
	// deletion or rollout). It is called as soon as that context ends and
	// before the work's context is cancelled, with a context bounded by
	// RetryPeriod: the work runs on under its term meanwhile, so the lookup
	// adds nothing to the time without a leader. Once the work has returned,
	// the lease is released reserved for
	// the identity it returns, which takes it at once while the others wait
	// two retry periods. "" releases to anyone. leasehold run chooses a
	// replica that survives the rollout.
	Successor func(ctx context.Context) string

	// Clock is the time source. Default: the real clock.
	Clock clock.Clock
	// Logger receives state changes (V(0)) and retries (V(2)). Default:
	// discard.
	Logger logr.Logger
	// Registerer, if set, receives the elector's Prometheus metrics, labelled
	// with the lease as lease="namespace/name".
	Registerer prometheus.Registerer
	// Recorder, if set, records "LeaderElection" Events on the Lease when this
	// candidate starts and stops leading.
	Recorder record.EventRecorder
}

// Validate reports every problem with the Config at once, each naming the
// field and its value.
func (c Config) Validate() error {
	_, err := c.complete()
	return err
}

// complete returns the holder configuration with defaults applied, or every
// problem found.
func (c Config) complete() (holder.Config, error) {
	core, err := holder.Config{
		Leases: c.Leases, Namespace: c.Namespace, Name: c.Name, Identity: c.Identity,
		Timing: holder.Timing{LeaseDuration: c.LeaseDuration, RenewDeadline: c.RenewDeadline, RetryPeriod: c.RetryPeriod},
		Clock:  c.Clock, Logger: c.Logger,
	}.Complete(holder.DefaultIdentity)
	if c.HandoffTimeout < 0 {
		err = errors.Join(err, fmt.Errorf("HandoffTimeout %v must not be negative", c.HandoffTimeout))
	}
	if err != nil {
		return core, fmt.Errorf("election: invalid config: %w", err)
	}
	return core, nil
}

func (c Config) handoffTimeout(t holder.Timing) time.Duration {
	if c.HandoffTimeout > 0 {
		return c.HandoffTimeout
	}
	return 2 * t.RetryPeriod
}

// DefaultIdentity returns the POD_NAME environment variable if set, else the
// hostname: the identity an Elector uses when Config.Identity is empty.
func DefaultIdentity() (string, error) { return holder.DefaultIdentity() }
