package election_test

import (
	"strings"
	"sync"
	"testing"
	"testing/synctest"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/leasehold/leasehold/election"
	"github.com/leasehold/leasehold/internal/fakelease"
	"github.com/leasehold/leasehold/lease"
)

// reports records PodAwareReport calls.
type reports struct {
	mu  sync.Mutex
	got []string
}

func (r *reports) add(part string, on bool, detail string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	state := "off"
	if on {
		state = "on"
	}
	r.got = append(r.got, part+" "+state+": "+detail)
}

func (r *reports) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

// TestPodAwareIsReportedOnce: a leader with an instance reports that it
// publishes it, and its terms carry it; a follower that may not read Pods
// reports once that it waits the lease duration, and still follows.
func TestPodAwareIsReportedOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		inst := lease.Instance{Namespace: ns, Pod: "a", PodUID: "uid-a", Container: "app", ContainerID: "containerd://" + strings.Repeat("a", 64)}
		pods := k8sfake.NewClientset(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "a", UID: "uid-a"}})
		forbidden := k8sfake.NewClientset()
		forbidden.PrependReactor("*", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "a", nil)
		})
		var ra, rb reports
		a := newElector(t, srv, "a", func(c *election.Config) {
			c.Pods, c.Instance, c.PodAwareReport = pods.CoreV1(), &inst, ra.add
		})
		b := newElector(t, srv, "b", func(c *election.Config) {
			c.Pods, c.PodAwareReport = forbidden.CoreV1(), rb.add
		})
		var r runner
		var ts terms
		r.start(t.Context(), "a", a, ts.work("a", untilDone))
		synctest.Wait()
		r.start(t.Context(), "b", b, ts.work("b", untilDone))
		synctest.Wait()
		if got := lease.NewSnapshot(srv.Lease(ns, name)).Instance; got == nil || *got != inst {
			t.Errorf("published instance %v, want %v", got, inst)
		}
		if got := ra.list(); len(got) != 1 || !strings.HasPrefix(got[0], "publish on: "+ns+"/a/app") {
			t.Errorf("a reported %q, want once that it publishes its instance", got)
		}
		got := rb.list()
		var witness []string
		for _, g := range got {
			if strings.HasPrefix(g, "witness") {
				witness = append(witness, g)
			}
		}
		if len(witness) != 1 || !strings.Contains(witness[0], "witness off") || !strings.Contains(witness[0], "forbidden") {
			t.Errorf("b reported %q, want once that the witness is off (forbidden)", got)
		}
		if !b.IsLeader() && !a.IsLeader() {
			t.Error("nobody leads")
		}
	})
}
