package lease_test

import (
	"testing"

	"github.com/leasehold/leasehold/lease"
)

func TestSnapshotInstance(t *testing.T) {
	inst := lease.Instance{Namespace: "ns", Pod: "p-1", PodUID: "uid-1", Container: "app", ContainerID: "containerd://abc"}
	tests := []struct {
		name        string
		holder      string
		transitions int32
		token       string
		instance    string
		want        *lease.Instance
	}{
		{"credited term", "a", 3, "150/3/a", lease.InstanceValue(inst, 3), &inst},
		{"written at another transition count", "a", 4, "150/4/a", lease.InstanceValue(inst, 3), nil},
		// A foreign writer named another holder: the instance is the old
		// holder's, whose death says nothing about the one named now.
		{"holder edited by a foreign writer", "b", 3, "150/3/a", lease.InstanceValue(inst, 3), nil},
		{"no token annotation (a client-go holder)", "a", 3, "", lease.InstanceValue(inst, 3), nil},
		{"released", "", 3, "150/3/a", lease.InstanceValue(inst, 3), nil},
		{"missing container ID", "a", 3, "150/3/a", "3/ns/p-1/uid-1/app/", nil},
		{"too few fields", "a", 3, "150/3/a", "3/ns/p-1/uid-1", nil},
		{"garbage count", "a", 3, "150/3/a", "x/ns/p-1/uid-1/app/containerd://abc", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := heldLease(tc.holder, tc.transitions, tc.token)
			if l.Annotations == nil {
				l.Annotations = map[string]string{}
			}
			l.Annotations[lease.InstanceAnnotation] = tc.instance
			got := lease.NewSnapshot(l).Instance
			switch {
			case tc.want == nil && got != nil:
				t.Errorf("Instance = %+v, want none", *got)
			case tc.want != nil && (got == nil || *got != *tc.want):
				t.Errorf("Instance = %v, want %+v", got, *tc.want)
			}
		})
	}
}

func TestInstanceValidate(t *testing.T) {
	ok := lease.Instance{Namespace: "ns", Pod: "p", PodUID: "u", Container: "c", ContainerID: "containerd://x"}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := ok
	bad.Pod = "a/b"
	if err := bad.Validate(); err == nil {
		t.Error("pod name with / accepted")
	}
	bad = ok
	bad.ContainerID = ""
	if err := bad.Validate(); err == nil {
		t.Error("empty container ID accepted")
	}
}
