package election

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/leasehold/leasehold/lease"
)

// metrics are the elector's Prometheus metrics. A nil *metrics records
// nothing.
type metrics struct {
	isLeader     prometheus.Gauge
	transitions  prometheus.Counter
	renew        prometheus.Histogram
	renewErrors  *prometheus.CounterVec
	acquire      prometheus.Histogram
	conflicts    prometheus.Counter
	attemptFails *prometheus.CounterVec
	podAware     *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer, namespace, name string) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	labels := prometheus.Labels{"lease": namespace + "/" + name}
	m := &metrics{
		isLeader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "leasehold_election_is_leader", ConstLabels: labels,
			Help: "1 while this process leads (its work function runs under a valid term), else 0.",
		}),
		transitions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "leasehold_election_leader_transitions_total", ConstLabels: labels,
			Help: "Times this process became leader.",
		}),
		renew: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "leasehold_election_renew_duration_seconds", ConstLabels: labels,
			Help:    "Latency of lease renewals by the leader, successful or not.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		renewErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "leasehold_election_renew_errors_total", ConstLabels: labels,
			Help: "Failed renewals by reason (conflict, forbidden, unauthorized, unavailable, timeout, invalid, other).",
		}, []string{"reason"}),
		acquire: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "leasehold_election_time_to_acquire_seconds", ConstLabels: labels,
			Help:    "Time from the start of a campaign to becoming leader.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 18),
		}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "leasehold_election_acquire_conflicts_total", ConstLabels: labels,
			Help: "Acquisition attempts that lost the race to another candidate (HTTP 409).",
		}),
		attemptFails: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "leasehold_election_acquire_errors_total", ConstLabels: labels,
			Help: "Acquisition attempts that failed with an API error, by reason.",
		}, []string{"reason"}),
		podAware: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "leasehold_election_pod_aware", ConstLabels: labels,
			Help: "Pod-aware takeover: part=publish is 1 while this process's terms publish its container instance, part=witness 1 while it can watch the leader's Pod for the kubelet's evidence; 0 otherwise (not in a Pod, no RBAC, Config.Pods unset).",
		}, []string{"part"}),
	}
	m.podAware.WithLabelValues("publish").Set(0)
	m.podAware.WithLabelValues("witness").Set(0)
	for _, c := range []prometheus.Collector{m.isLeader, m.transitions, m.renew, m.renewErrors, m.acquire, m.conflicts, m.attemptFails, m.podAware} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("election: registering metrics for lease %s/%s: %w", namespace, name, err)
		}
	}
	return m, nil
}

// reason returns a short label for an API error: conflict, forbidden,
// unauthorized, unavailable, timeout, invalid, notfound or other.
func reason(err error) string {
	switch {
	case errors.Is(err, lease.ErrConflict):
		return "conflict"
	case errors.Is(err, lease.ErrForbidden):
		return "forbidden"
	case errors.Is(err, lease.ErrUnauthorized):
		return "unauthorized"
	case errors.Is(err, lease.ErrNotFound):
		return "notfound"
	case errors.Is(err, lease.ErrInvalid):
		return "invalid"
	case errors.Is(err, lease.ErrUnavailable):
		return "unavailable"
	case isTimeout(err):
		return "timeout"
	default:
		return "other"
	}
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

func (m *metrics) leading(on bool) {
	if m == nil {
		return
	}
	if on {
		m.isLeader.Set(1)
		m.transitions.Inc()
	} else {
		m.isLeader.Set(0)
	}
}

func (m *metrics) renewed(latency time.Duration, err error) {
	if m == nil {
		return
	}
	m.renew.Observe(latency.Seconds())
	if err != nil {
		m.renewErrors.WithLabelValues(reason(err)).Inc()
	}
}

func (m *metrics) acquired(d time.Duration) {
	if m == nil {
		return
	}
	m.acquire.Observe(d.Seconds())
}

// podAwarePart records whether a part of pod-aware takeover (publish,
// witness) is on.
func (m *metrics) podAwarePart(part string, on bool) {
	if m == nil {
		return
	}
	v := 0.0
	if on {
		v = 1
	}
	m.podAware.WithLabelValues(part).Set(v)
}

func (m *metrics) conflict() {
	if m == nil {
		return
	}
	m.conflicts.Inc()
}

func (m *metrics) attemptFailed(err error) {
	if m == nil {
		return
	}
	m.attemptFails.WithLabelValues(reason(err)).Inc()
}
