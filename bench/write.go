package main

import (
	"context"
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
)

// leaseWriteResult is the JSON line of lease-write: what one write of a
// Lease costs on this control plane with nothing else running. A lock
// hand-over is one such write and the watch event that delivers it, so
// this is the floor under lock-handover's latency, and the CPU a write
// takes says how soon a closed loop of writes saturates the machine.
type leaseWriteResult struct {
	Bench string `json:"bench"`
	N     int    `json:"n"`
	// Write: the conditional update's round trip. Event: from sending it to
	// its watch event arriving on a watch by name.
	WriteP50 float64 `json:"write_p50_ms"`
	WriteP99 float64 `json:"write_p99_ms"`
	EventP50 float64 `json:"event_p50_ms"`
	EventP99 float64 `json:"event_p99_ms"`
	// CPU time kube-apiserver and etcd used per write (their idle work
	// included, which is small next to it).
	APIServerCPU float64 `json:"apiserver_cpu_ms_per_write"`
	EtcdCPU      float64 `json:"etcd_cpu_ms_per_write"`
}

// leaseWrite writes one Lease -write-n times in a row, each write after the
// previous one's event arrived, after 20 unmeasured writes.
func (b *bench) leaseWrite(ctx context.Context) (any, error) {
	leases := b.cs.CoordinationV1().Leases(namespace)
	holder := "bench"
	obj, err := leases.Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "bench-lease-write"},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: &holder},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create: %w", err)
	}
	w, err := leases.Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + obj.Name, ResourceVersion: obj.ResourceVersion})
	if err != nil {
		return nil, fmt.Errorf("watch: %w", err)
	}
	defer w.Stop()
	b.logf("lease-write: %d writes of lease %s/%s, one at a time", b.o.writeN, namespace, obj.Name)
	const warmup = 20
	var writes, events []time.Duration
	var api0, etcd0 time.Duration
	for i := -warmup; i < b.o.writeN; i++ {
		if i == 0 {
			if api0, etcd0, err = b.cp.CPUTime(); err != nil {
				return nil, err
			}
		}
		transitions := int32(i + warmup)
		obj.Spec.LeaseTransitions = &transitions
		start := time.Now()
		if obj, err = leases.Update(ctx, obj, metav1.UpdateOptions{}); err != nil {
			return nil, fmt.Errorf("update: %w", err)
		}
		wrote := time.Since(start)
		if err := awaitVersion(ctx, w, obj.ResourceVersion); err != nil {
			return nil, err
		}
		if i >= 0 {
			writes, events = append(writes, wrote), append(events, time.Since(start))
		}
	}
	api1, etcd1, err := b.cp.CPUTime()
	if err != nil {
		return nil, err
	}
	ws, es := summarize(writes), summarize(events)
	n := float64(b.o.writeN)
	r := leaseWriteResult{
		Bench: "lease-write", N: b.o.writeN,
		WriteP50: ws.P50, WriteP99: ws.P99, EventP50: es.P50, EventP99: es.P99,
		APIServerCPU: round3(ms(api1-api0) / n), EtcdCPU: round3(ms(etcd1-etcd0) / n),
	}
	b.logf("lease-write: write p50 %.3fms p99 %.3fms; its event p50 %.3fms p99 %.3fms; CPU per write: kube-apiserver %.2fms, etcd %.2fms",
		r.WriteP50, r.WriteP99, r.EventP50, r.EventP99, r.APIServerCPU, r.EtcdCPU)
	return r, nil
}

// awaitVersion reads w until it delivers the object at version rv.
func awaitVersion(ctx context.Context, w watch.Interface, rv string) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev, ok := <-w.ResultChan():
			if !ok {
				return fmt.Errorf("the watch ended before version %s", rv)
			}
			if ev.Type == watch.Error {
				return fmt.Errorf("watch: %v", ev.Object)
			}
			if l, ok := ev.Object.(*coordinationv1.Lease); ok && l.ResourceVersion == rv {
				return nil
			}
		}
	}
}
