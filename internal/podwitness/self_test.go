package podwitness_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/podwitness"
	"github.com/leasehold/leasehold/internal/testenv"
)

func cgroupOf(id string) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader("12:memory:/kubepods/besteffort/pod1/" + id + "\n")), nil
	}
}

// TestIntegrationDetect: the instance is this process's container as its
// cgroup names it, reported in the format of the Pod's status; Detect
// waits while the status still shows the previous run.
func TestIntegrationDetect(t *testing.T) {
	cp := testenv.Start(t)
	cs := testenv.Clientset(t, cp)
	const ns = "detect"
	if err := testenv.EnsureNamespace(t.Context(), cs, ns); err != nil {
		t.Fatal(err)
	}
	k := newPod(t, cs, ns, "me")
	env := map[string]string{
		podwitness.EnvPodName: "me", podwitness.EnvPodNamespace: ns, podwitness.EnvPodUID: string(k.pod.UID), podwitness.EnvContainer: "app",
	}
	getenv := func(k string) string { return env[k] }
	newID := strings.Repeat("a2", 32)

	// The status still shows the previous run (a1): Detect waits for a2.
	done := make(chan error, 1)
	go func() {
		inst, err := podwitness.Detect(t.Context(), cs.CoreV1(), getenv, cgroupOf(newID))
		if err == nil && inst.ContainerID != "containerd://"+newID {
			err = errors.New("detected " + inst.ContainerID)
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("Detect returned before the kubelet reported this run: %v", err)
	case <-time.After(time.Second):
	}
	k.report(restarted("app", cid("a1"), cid("a2")), running("side", cid("s1")))
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Detect did not see the status that reports this run")
	}

	for _, tc := range []struct {
		name   string
		env    map[string]string
		cgroup func() (io.ReadCloser, error)
		want   string
	}{
		{"not in a pod", map[string]string{}, cgroupOf(newID), "not running in a Pod"},
		{"no such container", map[string]string{podwitness.EnvContainer: "nosuch"}, cgroupOf(newID), "LEASEHOLD_CONTAINER=nosuch: pod detect/me has no container of that name"},
		{"another pod's UID", map[string]string{podwitness.EnvPodUID: "0000"}, cgroupOf(newID), "has UID"},
		{"container ID not visible", nil, func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("0::/\n")), nil }, "not visible in /proc/self/cgroup"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := map[string]string{}
			for k, v := range env {
				e[k] = v
			}
			if tc.name == "not in a pod" {
				e = map[string]string{}
			}
			for k, v := range tc.env {
				e[k] = v
			}
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			_, err := podwitness.Detect(ctx, cs.CoreV1(), func(k string) string { return e[k] }, tc.cgroup)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Detect: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
