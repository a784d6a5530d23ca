package podwitness

import (
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
)

// revisionLabels tell a Pod's template revision apart: Deployments'
// ReplicaSets stamp pod-template-hash, StatefulSets and DaemonSets
// controller-revision-hash.
var revisionLabels = []string{"pod-template-hash", "controller-revision-hash"}

// Successor chooses, among the Pods that share self's labels (its
// revision label aside), the replica a leader shutting down should hand
// over to so that leadership moves once in a rollout: a Ready Pod of the
// newest revision (the revision whose first Pod was created last); failing
// that, the youngest Pod that is not terminating. It returns the Pod's name
// (replicas use their Pod name as identity) and why it was chosen, or ""
// when there is no other Pod. It needs get and list on pods.
func Successor(ctx context.Context, pods corev1client.PodsGetter, ns, self string) (name, why string, err error) {
	api := pods.Pods(ns)
	me, err := api.Get(ctx, self, metav1.GetOptions{})
	if err != nil {
		return "", "", fmt.Errorf("podwitness: successor: get own pod %s/%s: %w", ns, self, err)
	}
	sel := labels.Set{}
	for k, v := range me.Labels {
		if !slices.Contains(revisionLabels, k) {
			sel[k] = v
		}
	}
	if len(sel) == 0 {
		return "", "", fmt.Errorf("podwitness: successor: pod %s/%s has no labels to find its replicas by", ns, self)
	}
	list, err := api.List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(sel).String()})
	if err != nil {
		return "", "", fmt.Errorf("podwitness: successor: list pods %s in %s: %w", labels.SelectorFromSet(sel), ns, err)
	}
	name, why = ChooseSuccessor(self, list.Items)
	return name, why, nil
}

// ChooseSuccessor is Successor's choice among pods (self excluded).
func ChooseSuccessor(self string, pods []corev1.Pod) (name, why string) {
	var live []corev1.Pod
	for _, p := range pods {
		if p.Name != self && p.DeletionTimestamp == nil && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			live = append(live, p)
		}
	}
	if len(live) == 0 {
		return "", ""
	}
	// The newest revision: its first Pod was created last.
	first := map[string]metav1.Time{}
	for _, p := range live {
		rev := revision(p)
		if t, ok := first[rev]; !ok || p.CreationTimestamp.Before(&t) {
			first[rev] = p.CreationTimestamp
		}
	}
	var newest string
	var newestAt metav1.Time
	found := false
	for rev, t := range first {
		if !found || newestAt.Before(&t) || (t.Equal(&newestAt) && rev > newest) {
			newest, newestAt, found = rev, t, true
		}
	}
	// Ready Pods of the newest revision, the longest Ready first: it has
	// shown it stays up.
	var ready []corev1.Pod
	for _, p := range live {
		if revision(p) == newest && isReady(p) {
			ready = append(ready, p)
		}
	}
	if len(ready) > 0 {
		slices.SortFunc(ready, func(a, b corev1.Pod) int {
			if c := readySince(a).Compare(readySince(b).Time); c != 0 {
				return c
			}
			return compareNames(a.Name, b.Name)
		})
		return ready[0].Name, "ready, of the newest revision"
	}
	slices.SortFunc(live, func(a, b corev1.Pod) int {
		if c := b.CreationTimestamp.Compare(a.CreationTimestamp.Time); c != 0 {
			return c
		}
		return compareNames(a.Name, b.Name)
	})
	return live[0].Name, "the youngest replica not terminating (none of the newest revision is ready)"
}

func compareNames(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func revision(p corev1.Pod) string {
	for _, l := range revisionLabels {
		if v, ok := p.Labels[l]; ok {
			return v
		}
	}
	return ""
}

func isReady(p corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func readySince(p corev1.Pod) metav1.Time {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.LastTransitionTime
		}
	}
	return metav1.Time{}
}
