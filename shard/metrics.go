package shard

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the group's Prometheus metrics. A nil *metrics records
// nothing.
type metrics struct {
	owned   prometheus.Gauge
	members prometheus.Gauge
	member  prometheus.Gauge
	moves   *prometheus.CounterVec
	serve   prometheus.Histogram
	writes  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, namespace, name string) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	labels := prometheus.Labels{"group": namespace + "/" + name}
	m := &metrics{
		owned: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "leasehold_shard_owned", ConstLabels: labels,
			Help: "Shards whose work runs in this member now.",
		}),
		members: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "leasehold_shard_members", ConstLabels: labels,
			Help: "Live members of the group in this member's view, itself included.",
		}),
		member: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "leasehold_shard_is_member", ConstLabels: labels,
			Help: "1 while this member's membership is valid (shards may run), else 0.",
		}),
		moves: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "leasehold_shard_moves_total", ConstLabels: labels,
			Help: "Shards started (direction=in) and stopped (direction=out) in this member.",
		}, []string{"direction"}),
		serve: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "leasehold_shard_time_to_serve_seconds", ConstLabels: labels,
			Help:    "Time from a shard's assignment to this member to the start of its work.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 18),
		}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "leasehold_shard_writes_total", ConstLabels: labels,
			Help: "Writes by this member: kind=renew (its membership, carrying its claims), evict, release; result=ok or the error reason.",
		}, []string{"kind", "result"}),
	}
	for _, c := range []prometheus.Collector{m.owned, m.members, m.member, m.moves, m.serve, m.writes} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("shard: registering metrics for group %s/%s: %w", namespace, name, err)
		}
	}
	return m, nil
}

func (m *metrics) gauges(owned, members int, member bool) {
	if m == nil {
		return
	}
	m.owned.Set(float64(owned))
	m.members.Set(float64(members))
	if member {
		m.member.Set(1)
	} else {
		m.member.Set(0)
	}
}

func (m *metrics) moved(in bool) {
	if m == nil {
		return
	}
	if in {
		m.moves.WithLabelValues("in").Inc()
	} else {
		m.moves.WithLabelValues("out").Inc()
	}
}

func (m *metrics) served(d time.Duration) {
	if m == nil {
		return
	}
	m.serve.Observe(d.Seconds())
}

func (m *metrics) wrote(kind string, err error) {
	if m == nil {
		return
	}
	m.writes.WithLabelValues(kind, reason(err)).Inc()
}
