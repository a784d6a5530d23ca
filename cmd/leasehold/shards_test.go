package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/leasehold/leasehold/internal/testenv"
	"github.com/leasehold/leasehold/internal/testproc"
	"github.com/leasehold/leasehold/lease"
	"github.com/leasehold/leasehold/shard"
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
	if !strings.Contains(out.stdout, "describe shardgroup/workers -n default") {
		t.Errorf("describe workers-a does not point to its group:\n%s", out.stdout)
	}
	for _, want := range []string{"Shard Group:      workers", "Shards:           4", "Claimed Shards:   2: "} {
		if !strings.Contains(out.stdout, want) {
			t.Errorf("describe workers-a lacks %q:\n%s", want, out.stdout)
		}
	}
	// get lists the group after the Leases, get shardgroups only the
	// group; describe shardgroup/ shows its members and assignment.
	row := regexp.MustCompile(`(?m)^workers\s+4\s+2/2\s+a=2,b=2\s+0$`)
	for _, args := range [][]string{{"get"}, {"get", "shardgroups"}, {"get", "shardgroup/workers"}, {"list"}} {
		if out := cli(t, cp, args...).ok(t); !row.MatchString(out.stdout) || !strings.Contains(out.stdout, "SHARD GROUP") {
			t.Errorf("%v does not list group workers with 2 of 2 members owning 2 shards each:\n%s", args, out.stdout)
		}
	}
	out = cli(t, cp, "describe", "shardgroup/workers").ok(t)
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^Shard Group:\s+workers$`),
		regexp.MustCompile(`(?m)^Members:\s+2 live of 2$`),
		regexp.MustCompile(`(?m)^\s+a\s+workers-a\s+held\s+2\s+\d+(-\d+|\.\d+) \(\d+\)`),
		regexp.MustCompile(`(?m)^\s+b\s+workers-b\s+held\s+2\s+\d+(-\d+|\.\d+) \(\d+\)`),
		regexp.MustCompile(`(?m)^Unowned Shards:\s+<none>$`),
	} {
		if !want.MatchString(out.stdout) {
			t.Errorf("describe shardgroup/workers does not match %s:\n%s", want, out.stdout)
		}
	}
	cli(t, cp, "get", "shardgroup/nope").fails(t, ExitError, `shard group "nope" not found`)
	cli(t, cp, "get", "shardgroup/workers", "workers-a").fails(t, ExitUsage, "not both")

	procs["b"].Signal(syscall.SIGTERM)
	if code := procs["b"].Wait(t); code != 0 {
		t.Errorf("b exited with %d, want 0", code)
	}
	delete(addrs, "b")
	waitOwned(map[string]int{"a": 4})
	// b left: released, owning nothing; a member Lease edited by hand is
	// shown as such.
	edited := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "workers-c", Namespace: "default",
			Labels: map[string]string{shard.GroupLabel: "workers"}, Annotations: map[string]string{shard.MemberAnnotation: "v1;k=4;c=9:0-3;sum=bogus"}},
		Spec: lease.Record{Holder: "c", LeaseDuration: time.Minute, AcquireTime: time.Now(), RenewTime: time.Now()}.ToSpec(),
	}
	if _, err := testenv.Clientset(t, cp).CoordinationV1().Leases("default").Create(t.Context(), edited, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if out := cli(t, cp, "get", "shardgroups").ok(t); !regexp.MustCompile(`(?m)^workers\s+4\s+1/3\s+a=4\s+0$`).MatchString(out.stdout) {
		t.Errorf("get shardgroups after b left and c was edited by hand, want 1 of 3 members live, a owning 4:\n%s", out.stdout)
	}
	out = cli(t, cp, "describe", "shardgroup/workers").ok(t)
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^\s+<none>\s+workers-b\s+released\s+0\s+<none>$`),
		regexp.MustCompile(`(?m)^\s+c\s+workers-c\s+edited\s+0\s+<none>$`),
		regexp.MustCompile(`(?m)^Warning:\s+workers-c: annotation .* edited by hand`),
	} {
		if !want.MatchString(out.stdout) {
			t.Errorf("describe shardgroup/workers does not match %s:\n%s", want, out.stdout)
		}
	}
	procs["a"].Signal(syscall.SIGTERM)
	procs["a"].Wait(t)
}

// TestRunShardsSignals: run --shards relays signals to every shard's
// COMMAND as run does to its one: SIGUSR1 reaches each; SIGTSTP stops each
// and then leasehold; on SIGCONT a COMMAND whose shard is still this
// member's continues, and one whose member's renew deadline passed while
// stopped (the shard taken over meanwhile) is killed, never continued.
func TestRunShardsSignals(t *testing.T) {
	cp := testenv.Start(t)
	log := filepath.Join(t.TempDir(), "log")
	work := []string{"sh", "-c", fmt.Sprintf(`trap 'echo "usr1 $LEASEHOLD_IDENTITY $LEASEHOLD_SHARD" >> '%[1]s'' USR1; trap 'exit 0' TERM; echo "start $LEASEHOLD_IDENTITY $LEASEHOLD_SHARD" >> '%[1]s'; while :; do sleep 0.05; done`, log)}
	start := func(id string) (*testproc.Proc, string) {
		args := append(append([]string{"run", "--shards", "2", "--lease", "sig", "--identity", id, "--http", "127.0.0.1:0"}, fastTimings...), "--")
		p := startCLI(t, cp, append(args, work...)...)
		return p, p.HTTPAddr(t)
	}
	owned := func(addr string) int {
		v, err := getShards(t, addr)
		if err != nil {
			return -1
		}
		return len(v.Owned)
	}
	logHas := func(line string) bool {
		data, _ := os.ReadFile(log)
		return slices.Contains(strings.Split(string(data), "\n"), line)
	}
	a, addrA := start("a")
	eventually(t, 20*time.Second, "a to own both shards", func() bool { return owned(addrA) == 2 && len(childPids(t, a.Pid())) == 2 })
	// Each COMMAND writes "start" after it has set its traps: a SIGUSR1
	// sooner would kill it (sh's default), not reach its trap.
	eventually(t, 10*time.Second, "both shards' COMMAND to set their traps", func() bool { return logHas("start a 0") && logHas("start a 1") })

	a.Signal(syscall.SIGUSR1)
	eventually(t, 10*time.Second, "SIGUSR1 to reach both shards' COMMAND", func() bool { return logHas("usr1 a 0") && logHas("usr1 a 1") })

	// Stopped and continued while the term holds: both continue.
	kids := childPids(t, a.Pid())
	a.Signal(syscall.SIGTSTP)
	waitStopped(t, a.Pid())
	for _, pid := range kids {
		waitStopped(t, pid)
	}
	a.Signal(syscall.SIGCONT)
	for _, pid := range kids {
		eventually(t, 10*time.Second, "the shards' COMMANDs to be continued", func() bool { return testproc.Running(pid) && !stopped(pid) })
	}

	// Stopped until the other member has taken a's shard over: a's
	// COMMAND is killed on SIGCONT.
	b, addrB := start("b")
	eventually(t, 20*time.Second, "a and b to own a shard each", func() bool { return owned(addrA) == 1 && owned(addrB) == 1 })
	kids = childPids(t, a.Pid())
	if len(kids) != 1 {
		t.Fatalf("a runs %d COMMANDs, want 1", len(kids))
	}
	a.Signal(syscall.SIGTSTP)
	waitStopped(t, a.Pid())
	waitStopped(t, kids[0])
	eventually(t, 20*time.Second, "b to own both shards", func() bool { return owned(addrB) == 2 })
	a.Signal(syscall.SIGCONT)
	a.Stderr.WaitFor(t, "killed sh of shard", 10*time.Second)
	eventually(t, 10*time.Second, "a's old COMMAND to be gone", func() bool { return !testproc.Running(kids[0]) })
	for _, p := range []*testproc.Proc{a, b} {
		p.Signal(syscall.SIGTERM)
		p.Wait(t)
	}
}
