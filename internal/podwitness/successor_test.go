package podwitness_test

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/leasehold/leasehold/internal/podwitness"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func replica(name, rev string, created time.Duration, ready bool, readyAt time.Duration) corev1.Pod {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	return corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "w", "pod-template-hash": rev}, CreationTimestamp: metav1.NewTime(t0.Add(created))},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{
			{Type: corev1.PodReady, Status: status, LastTransitionTime: metav1.NewTime(t0.Add(readyAt))},
		}},
	}
}

func terminating(p corev1.Pod) corev1.Pod {
	now := metav1.NewTime(t0.Add(time.Hour))
	p.DeletionTimestamp = &now
	return p
}

func TestChooseSuccessor(t *testing.T) {
	for _, tc := range []struct {
		name string
		pods []corev1.Pod
		want string
	}{
		{"mid-rollout: a ready pod of the new revision, not an old one", []corev1.Pod{
			replica("old-me", "a", 0, true, 1), replica("old-2", "a", 0, true, 1), replica("old-3", "a", 0, true, 1),
			replica("new-1", "b", 10*time.Minute, true, 11*time.Minute),
		}, "new-1"},
		{"the longest ready of the new revision", []corev1.Pod{
			replica("old-me", "a", 0, true, 1), replica("new-2", "b", 12*time.Minute, true, 13*time.Minute),
			replica("new-1", "b", 10*time.Minute, true, 11*time.Minute),
		}, "new-1"},
		{"new revision not ready yet: the youngest not terminating", []corev1.Pod{
			replica("old-me", "a", 0, true, 1), replica("old-2", "a", time.Minute, true, 1),
			replica("new-1", "b", 10*time.Minute, false, 0), terminating(replica("new-0", "b", 11*time.Minute, true, 11*time.Minute)),
		}, "new-1"},
		{"pod deletion, no rollout: a ready peer", []corev1.Pod{
			replica("me", "a", 0, true, 1), replica("peer-1", "a", time.Minute, true, 2*time.Minute), replica("peer-2", "a", time.Minute, false, 0),
		}, "peer-1"},
		{"alone", []corev1.Pod{replica("me", "a", 0, true, 1)}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			self := tc.pods[0].Name
			if got, why := podwitness.ChooseSuccessor(self, tc.pods); got != tc.want {
				t.Errorf("ChooseSuccessor = %q (%s), want %q", got, why, tc.want)
			}
		})
	}
}
