package podwitness_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/leasehold/leasehold/internal/holder"
	"github.com/leasehold/leasehold/internal/podwitness"
	"github.com/leasehold/leasehold/internal/testenv"
	"github.com/leasehold/leasehold/lease"
)

var timing = holder.Timing{LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second}

// kubelet plays the kubelet's part for one Pod on the API: the Pod object
// and the container statuses it reports. (On a real node the kubelet
// writes them; see test/e2e.)
type kubelet struct {
	t   *testing.T
	cs  kubernetes.Interface
	pod *corev1.Pod
}

func newPod(t *testing.T, cs kubernetes.Interface, ns, name string) *kubelet {
	t.Helper()
	p, err := cs.CoreV1().Pods(ns).Create(t.Context(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{
			{Name: "app", Image: "leasehold:test"}, {Name: "side", Image: "leasehold:test"},
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	k := &kubelet{t: t, cs: cs, pod: p}
	k.report(running("app", cid("a1")), running("side", cid("s1")))
	return k
}

func cid(s string) string { return "containerd://" + strings.Repeat(s, 32) }

func (k *kubelet) report(statuses ...corev1.ContainerStatus) {
	k.t.Helper()
	p := k.pod.DeepCopy()
	p.Status.ContainerStatuses = statuses
	out, err := k.cs.CoreV1().Pods(p.Namespace).UpdateStatus(k.t.Context(), p, metav1.UpdateOptions{})
	if err != nil {
		k.t.Fatal(err)
	}
	k.pod = out
}

func (k *kubelet) instance(container, id string) lease.Instance {
	return lease.Instance{Namespace: k.pod.Namespace, Pod: k.pod.Name, PodUID: k.pod.UID, Container: container, ContainerID: id}
}

// follower is a candidate whose clock never moves: it can take the lease
// only on a witness's evidence, never by expiry.
type follower struct {
	cand    *holder.Candidate
	witness *podwitness.Witness
	got     chan *holder.Term
	runErr  chan error
}

func startFollower(t *testing.T, leases kubernetes.Interface, pods kubernetes.Interface, ns, name string) *follower {
	t.Helper()
	c, err := lease.NewClient(leases.CoordinationV1(), ns, name)
	if err != nil {
		t.Fatal(err)
	}
	frozen := clocktesting.NewFakeClock(time.Now())
	obs := holder.NewObserver(c, frozen, time.Second)
	w := podwitness.New(pods.CoreV1(), obs, nil, 100*time.Millisecond)
	cand, err := holder.NewCandidate(obs, holder.CandidateConfig{Identity: "b", Timing: timing, Clock: frozen, Witness: w})
	if err != nil {
		t.Fatal(err)
	}
	f := &follower{cand: cand, witness: w, got: make(chan *holder.Term, 1), runErr: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = obs.Run(ctx) })
	wg.Go(func() { f.runErr <- w.Run(ctx) })
	wg.Go(func() {
		term, err := cand.Acquire(ctx)
		if err == nil {
			f.got <- term
		}
	})
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		select {
		case term := <-f.got:
			term.Abandon()
		default:
		}
	})
	return f
}

// tookOver waits for the follower's acquisition.
func (f *follower) tookOver(t *testing.T) *holder.Term {
	t.Helper()
	select {
	case term := <-f.got:
		f.got <- term // for cleanup
		return term
	case <-time.After(30 * time.Second):
		t.Fatal("the follower did not take over on the kubelet's evidence")
		return nil
	}
}

// holds checks that the follower has not taken over after the witness had
// time to react (it reacts within milliseconds when it does).
func (f *follower) holds(t *testing.T) {
	t.Helper()
	select {
	case <-f.got:
		t.Fatal("the follower took over without the kubelet's evidence")
	case <-time.After(2 * time.Second):
	}
}

// crashedHolder takes the lease as a with inst published, then stops
// renewing without releasing: a process that died.
func crashedHolder(t *testing.T, cs kubernetes.Interface, ns, name string, inst lease.Instance) lease.Token {
	t.Helper()
	c, err := lease.NewClient(cs.CoordinationV1(), ns, name)
	if err != nil {
		t.Fatal(err)
	}
	obs := holder.NewObserver(c, nil, time.Second)
	cand, err := holder.NewCandidate(obs, holder.CandidateConfig{Identity: "a", Timing: timing, Instance: &inst})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { _ = obs.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()
	term, err := cand.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	term.Abandon()
	return term.Token()
}

func TestIntegrationTakeoverOnlyOnKubeletEvidence(t *testing.T) {
	cp := testenv.Start(t)
	cs := testenv.Clientset(t, cp)
	setup := func(t *testing.T, name string) (*kubelet, lease.Token, *follower) {
		ns := strings.ReplaceAll(strings.ToLower(name), "_", "-")
		if err := testenv.EnsureNamespace(t.Context(), cs, ns); err != nil {
			t.Fatal(err)
		}
		k := newPod(t, cs, ns, "leader")
		tok := crashedHolder(t, cs, ns, "lock", k.instance("app", cid("a1")))
		return k, tok, startFollower(t, cs, cs, ns, "lock")
	}

	t.Run("container killed", func(t *testing.T) {
		t.Parallel()
		k, tok, f := setup(t, "killed")
		f.holds(t)
		k.report(terminated("app", cid("a1")), running("side", cid("s1")))
		if term := f.tookOver(t); term.Token() <= tok {
			t.Errorf("token %d after %d", term.Token(), tok)
		}
	})
	t.Run("container restarted", func(t *testing.T) {
		t.Parallel()
		k, _, f := setup(t, "restarted")
		k.report(restarted("app", cid("a1"), cid("a2")), running("side", cid("s1")))
		f.tookOver(t)
	})
	t.Run("deleted after the kubelet confirmed", func(t *testing.T) {
		t.Parallel()
		k, _, f := setup(t, "deleted")
		f.holds(t) // the witness follows the Pod: it sees the report before the deletion
		k.report(terminated("app", cid("a1")), terminated("side", cid("s1")))
		if err := cs.CoreV1().Pods(k.pod.Namespace).Delete(t.Context(), k.pod.Name, *metav1.NewDeleteOptions(0)); err != nil {
			t.Fatal(err)
		}
		f.tookOver(t)
	})
	t.Run("another container terminated", func(t *testing.T) {
		t.Parallel()
		k, _, f := setup(t, "other-container")
		k.report(running("app", cid("a1")), terminated("side", cid("s1")))
		f.holds(t)
	})
	t.Run("pod not ready, container running", func(t *testing.T) {
		t.Parallel()
		k, _, f := setup(t, "not-ready")
		p := k.pod.DeepCopy()
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse, Reason: "NodeNotReady"}}
		if _, err := cs.CoreV1().Pods(p.Namespace).UpdateStatus(t.Context(), p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		f.holds(t)
	})
	t.Run("force deleted", func(t *testing.T) {
		t.Parallel()
		k, _, f := setup(t, "force-deleted")
		if err := cs.CoreV1().Pods(k.pod.Namespace).Delete(t.Context(), k.pod.Name, *metav1.NewDeleteOptions(0)); err != nil {
			t.Fatal(err)
		}
		f.holds(t)
	})
	t.Run("pod re-created under the same name", func(t *testing.T) {
		t.Parallel()
		k, _, f := setup(t, "recreated")
		if err := cs.CoreV1().Pods(k.pod.Namespace).Delete(t.Context(), k.pod.Name, *metav1.NewDeleteOptions(0)); err != nil {
			t.Fatal(err)
		}
		k2 := newPod(t, cs, k.pod.Namespace, k.pod.Name)
		k2.report(terminated("app", cid("a1")))
		f.holds(t)
	})
	t.Run("no permission to read pods", func(t *testing.T) {
		t.Parallel()
		ns := "forbidden"
		if err := testenv.EnsureNamespace(t.Context(), cs, ns); err != nil {
			t.Fatal(err)
		}
		k := newPod(t, cs, ns, "leader")
		crashedHolder(t, cs, ns, "lock", k.instance("app", cid("a1")))
		token, err := cp.ServiceAccountToken(t.Context(), ns, "leases-only", testenv.LeaseRules())
		if err != nil {
			t.Fatal(err)
		}
		limited, err := kubernetes.NewForConfig(cp.ConfigForToken(token))
		if err != nil {
			t.Fatal(err)
		}
		f := startFollower(t, limited, limited, ns, "lock")
		k.report(terminated("app", cid("a1")))
		select {
		case err := <-f.runErr:
			if !errors.Is(err, podwitness.ErrForbidden) || !strings.Contains(err.Error(), "pods") {
				t.Errorf("Run: %v, want ErrForbidden naming pods", err)
			}
			if f.witness.Disabled() == nil {
				t.Error("Disabled() nil after a forbidden read")
			}
		case <-time.After(30 * time.Second):
			t.Fatal("Run did not report the missing permission")
		}
		f.holds(t)
	})
}
