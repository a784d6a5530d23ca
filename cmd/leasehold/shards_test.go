package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/testenv"
)

func getShards(t *testing.T, addr string) (shardsView, error) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/shards")
	if err != nil {
		return shardsView{}, err
	}
	defer resp.Body.Close()
	var v shardsView
	return v, json.NewDecoder(resp.Body).Decode(&v)
}

// TestRunShards: two `run --shards 4` members split the shards two and two,
// each shard's COMMAND gets its shard, K and token in its environment; when
// one member stops, the other runs all four, and /shards says so.
func TestRunShards(t *testing.T) {
	cp := testenv.Start(t)
	log := filepath.Join(t.TempDir(), "log")
	work := []string{"sh", "-c", fmt.Sprintf(`echo "start $LEASEHOLD_IDENTITY $LEASEHOLD_SHARD/$LEASEHOLD_SHARDS $LEASEHOLD_TOKEN $LEASEHOLD_GROUP" >> '%s'; trap 'exit 0' TERM; while :; do sleep 0.1; done`, log)}
	addrs := map[string]string{}
	procs := map[string]interface {
		Signal(os.Signal)
		Wait(testing.TB) int
	}{}
	for _, id := range []string{"a", "b"} {
		args := append(append([]string{"run", "--shards", "4", "--lease", "workers", "--identity", id, "--http", "127.0.0.1:0"}, fastTimings...), "--")
		p := startCLI(t, cp, append(args, work...)...)
		procs[id], addrs[id] = p, p.HTTPAddr(t)
	}
	waitOwned := func(want map[string]int) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			got := map[string]int{}
			for id, addr := range addrs {
				if v, err := getShards(t, addr); err == nil {
					got[id] = len(v.Owned)
				}
			}
			if fmt.Sprint(got) == fmt.Sprint(want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("owned shards %v, want %v", got, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitOwned(map[string]int{"a": 2, "b": 2})
	v, err := getShards(t, addrs["a"])
	if err != nil || len(v.Members) != 2 || len(v.Owners) != 4 || v.Group != "default/workers" {
		t.Fatalf("/shards = %+v, %v", v, err)
	}
	data, _ := os.ReadFile(log)
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.Fields(line)
		if len(f) != 5 || !strings.HasSuffix(f[2], "/4") || f[3] == "" || f[4] != "default/workers" {
			t.Errorf("COMMAND environment line %q, want identity, shard/4, token and group", line)
		}
	}
	// describe shows a member's group and claims.
	out := cli(t, cp, "describe", "workers-a")
	for _, want := range []string{"Shard Group:      workers", "Shards:           4", "Claimed Shards:   2: "} {
		if !strings.Contains(out.stdout, want) {
			t.Errorf("describe workers-a lacks %q:\n%s", want, out.stdout)
		}
	}
	procs["b"].Signal(syscall.SIGTERM)
	if code := procs["b"].Wait(t); code != 0 {
		t.Errorf("b exited with %d, want 0", code)
	}
	delete(addrs, "b")
	waitOwned(map[string]int{"a": 4})
	procs["a"].Signal(syscall.SIGTERM)
	procs["a"].Wait(t)
}
