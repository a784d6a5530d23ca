package shard

import (
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/util/validation"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"

	"github.com/leasehold/leasehold/internal/holder"
)

// Limits.
const (
	// MaxShards bounds Config.Shards: every member computes the assignment
	// of all shards on every membership change (O(K·N·log) work) and writes
	// its claims into one annotation.
	MaxShards = 16384
	// MaxNameLength bounds Config.Name, which is a label value and the
	// prefix of every member's Lease name.
	MaxNameLength = 40
)

// Config configures a Group. The zero value of every optional field means
// its documented default; New never modifies the caller's Config.
type Config struct {
	// Leases is the API to use, usually clientset.CoordinationV1(). The
	// members need get, watch, create and update on Leases in Namespace.
	// Required.
	Leases coordinationv1client.LeasesGetter
	// Namespace of the membership Leases. Required.
	Namespace string
	// Name of the group: every member has its own Lease named
	// "<Name>-<Identity>" (or "<Name>-<hash>" when that is not a valid
	// name), labelled GroupLabel=<Name>. A DNS label of at most
	// MaxNameLength characters. Required.
	Name string
	// Shards is the number of shards K, numbered 0..K-1. Every member of a
	// group must use the same K; a member refuses to join a group whose
	// live members use another. Between 1 and MaxShards. Required.
	Shards int
	// Identity of this member, unique in the group. Default: the POD_NAME
	// environment variable, else the hostname.
	Identity string

	// LeaseDuration is how long the others wait, after they last saw this
	// member's Lease change, before they take its shards over: the
	// crash-failover time. Whole seconds. Default 15s.
	LeaseDuration time.Duration
	// RenewDeadline is how long a member keeps its shards without a
	// successful renewal of its membership, counted from when the last one
	// was sent; every shard's context ends then. Default: 2/3 of
	// LeaseDuration.
	RenewDeadline time.Duration
	// RetryPeriod is the interval between renewals of the membership Lease:
	// one write per member per RetryPeriod in steady state, whatever
	// Shards is. Default: RenewDeadline/5.
	RetryPeriod time.Duration

	// Clock is the time source. Default: the real clock.
	Clock clock.Clock
	// Logger receives membership and ownership changes (V(0)) and retries
	// (V(2)). Default: discard.
	Logger logr.Logger
	// Registerer, if set, receives the group's Prometheus metrics,
	// labelled group="namespace/name".
	Registerer prometheus.Registerer
	// Recorder, if set, records Events on this member's Lease when it joins,
	// leaves, when its shards change and when a membership Lease was edited
	// by hand.
	Recorder record.EventRecorder
}

// Validate reports every problem with the Config at once, each naming the
// field and its value.
func (c Config) Validate() error {
	_, err := c.complete()
	return err
}

func (c Config) complete() (holder.Config, error) {
	core, err := holder.Config{
		Leases: c.Leases, Namespace: c.Namespace, Name: c.Name, Identity: c.Identity,
		Timing: holder.Timing{LeaseDuration: c.LeaseDuration, RenewDeadline: c.RenewDeadline, RetryPeriod: c.RetryPeriod},
		Clock:  c.Clock, Logger: c.Logger,
	}.Complete(holder.DefaultIdentity)
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	if c.Name != "" {
		if msgs := validation.IsDNS1123Label(c.Name); len(msgs) > 0 || len(c.Name) > MaxNameLength {
			errs = append(errs, fmt.Errorf("Name %q must be a DNS label (lower-case letters, digits, '-') of at most %d characters: it is a label value and the prefix of each member's Lease name", c.Name, MaxNameLength))
		}
	}
	if c.Shards < 1 || c.Shards > MaxShards {
		errs = append(errs, fmt.Errorf("Shards %d must be between 1 and %d", c.Shards, MaxShards))
	}
	if len(errs) > 0 {
		return core, fmt.Errorf("shard: invalid config: %w", errors.Join(errs...))
	}
	return core, nil
}
