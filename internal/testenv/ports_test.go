package testenv

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestStartTriesNewPortsWhenOneIsTaken: a port picked for the control plane
// can be taken by another process before etcd or kube-apiserver binds it.
// The start must then succeed on new ports, for either binary.
func TestStartTriesNewPortsWhenOneIsTaken(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs a real kube-apiserver (skipped with -short)")
	}
	for _, tc := range []struct {
		name  string
		taken int // index of the picked port that someone else holds: etcd client 0, apiserver 2
		log   string
	}{
		{"etcd", 0, "etcd.try1.log"},
		{"kube-apiserver", 2, "kube-apiserver.try1.log"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			held := l.Addr().(*net.TCPAddr).Port
			picks := 0
			pickPorts = func(n int) ([]int, error) {
				picks++
				ports, err := freePorts(n)
				if picks == 1 && err == nil {
					ports[tc.taken] = held
				}
				return ports, err
			}
			defer func() { pickPorts = freePorts }()

			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
			defer cancel()
			dir := t.TempDir()
			c, err := StartControlPlane(ctx, Options{Dir: dir, Output: os.Stderr})
			if err != nil {
				t.Fatalf("start with port %d held: %v", held, err)
			}
			defer c.Stop()
			if picks != 2 {
				t.Errorf("ports picked %d times, want 2 (the first set, then a new one)", picks)
			}
			if strings.HasSuffix(c.URL, ":"+strconv.Itoa(held)) || strings.HasSuffix(c.etcdURL, ":"+strconv.Itoa(held)) {
				t.Errorf("started on the held port %d: apiserver %s, etcd %s", held, c.URL, c.etcdURL)
			}
			first, err := os.ReadFile(filepath.Join(dir, tc.log))
			if err != nil || !strings.Contains(string(first), "address already in use") {
				t.Errorf("%s: %v; want the failed first start's log with its bind error:\n%s", tc.log, err, first)
			}
			cs, err := c.Clientset()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := cs.Discovery().ServerVersion(); err != nil {
				t.Errorf("the control plane started on new ports does not answer: %v", err)
			}
		})
	}
}
