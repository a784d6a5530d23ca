package podwitness_test

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/leasehold/leasehold/internal/podwitness"
	"github.com/leasehold/leasehold/lease"
)

var inst = lease.Instance{Namespace: "ns", Pod: "p", PodUID: "uid-1", Container: "app", ContainerID: "containerd://aaa"}

func pod(uid string, statuses ...corev1.ContainerStatus) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", UID: "uid-1"},
		Status:     corev1.PodStatus{ContainerStatuses: statuses},
	}
}

func running(name, id string) corev1.ContainerStatus {
	return corev1.ContainerStatus{Name: name, ContainerID: id, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}
}

func terminated(name, id string) corev1.ContainerStatus {
	return corev1.ContainerStatus{Name: name, ContainerID: id, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, ContainerID: id}}}
}

func restarted(name, oldID, newID string) corev1.ContainerStatus {
	s := running(name, newID)
	s.LastTerminationState = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, ContainerID: oldID}}
	return s
}

func TestConfirms(t *testing.T) {
	otherUID := pod("")
	otherUID.UID = "uid-2"
	otherUID.Status.ContainerStatuses = []corev1.ContainerStatus{terminated("app", "containerd://aaa")}
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		want bool
	}{
		{"terminated", pod("", terminated("app", "containerd://aaa")), true},
		{"restarted: the instance is the last termination", pod("", restarted("app", "containerd://aaa", "containerd://bbb")), true},
		{"running", pod("", running("app", "containerd://aaa")), false},
		{"an earlier run terminated, the instance runs", pod("", restarted("app", "containerd://000", "containerd://aaa")), false},
		{"status not yet updated after a restart", pod("", running("app", "containerd://000")), false},
		{"another container of the pod terminated", pod("", running("app", "containerd://aaa"), terminated("side", "containerd://aaa")), false},
		{"waiting, no IDs", pod("", corev1.ContainerStatus{Name: "app", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{}}}), false},
		{"no status at all", pod(""), false},
		{"a pod re-created under the same name", otherUID, false},
		{"no pod", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := podwitness.Confirms(tc.pod, inst); got != tc.want {
				t.Errorf("Confirms = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestContainerIDFromCgroup(t *testing.T) {
	id := strings.Repeat("0123456789abcdef", 4)
	for _, tc := range []struct{ name, cgroup, want string }{
		{"cgroup v1, cgroupfs", "12:memory:/kubepods/besteffort/pod1234-5678/" + id + "\n11:cpu:/kubepods/besteffort/pod1234-5678/" + id + "\n", id},
		{"systemd, containerd", "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod12.slice/cri-containerd-" + id + ".scope\n", id},
		{"systemd, cri-o", "0::/kubepods.slice/kubepods-pod12.slice/crio-" + id + ".scope\n", id},
		{"cgroup v2, private namespace", "0::/\n", ""},
		{"a host process", "0::/user.slice/user-0.slice/session-1.scope\n", ""},
		{"too short", "12:memory:/kubepods/pod1/0123abcd\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := podwitness.ContainerIDFromCgroup(strings.NewReader(tc.cgroup)); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
