package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/testenv"
	"github.com/leasehold/leasehold/internal/testproc"
)

// short timings for the tests (election validates RetryPeriod < RenewDeadline
// < LeaseDuration, LeaseDuration in whole seconds).
var fastTimings = []string{"--lease-duration", "2s", "--renew-deadline", "1500ms", "--retry-period", "300ms", "--grace", "2s"}

// workload logs "start", a "beat" every 0.1 s and "stop" (on SIGTERM, then
// exit 7) with its identity, token and a nanosecond timestamp to log.
func replicaWorkload(log string) []string {
	line := func(what string) string {
		return fmt.Sprintf(`echo "%s $LEASEHOLD_IDENTITY $LEASEHOLD_TOKEN $(date +%%s%%N)" >> '%s'`, what, log)
	}
	return []string{"sh", "-c", fmt.Sprintf(`%s; trap '%s; exit 7' TERM; while :; do %s; sleep 0.1; done`,
		line("start"), strings.ReplaceAll(line("stop"), `'`, `'\''`), line("beat"))}
}

func TestRunReplicas(t *testing.T) {
	cp := testenv.Start(t)
	cs := testenv.Clientset(t, cp)
	log := filepath.Join(t.TempDir(), "log")
	procs := map[string]*testproc.Proc{}
	addrs := map[string]string{}
	for _, id := range []string{"a", "b", "c"} {
		args := append(append([]string{"run", "--lease", "replicas", "--identity", id, "--http", "127.0.0.1:0"}, fastTimings...), "--")
		procs[id] = startCLI(t, cp, append(args, replicaWorkload(log)...)...)
		addrs[id] = procs[id].HTTPAddr(t)
	}

	// One of them leads and runs the workload.
	first := waitTerm(t, log, nil)
	follower := "a"
	if first.id == "a" {
		follower = "b"
	}
	for id, addr := range addrs {
		want := http.StatusServiceUnavailable
		if id == first.id {
			want = http.StatusOK
		}
		if code, _ := httpGet(t, addr, "/readyz"); code != want {
			t.Errorf("%s /readyz: %d, want %d", id, code, want)
		}
	}
	lead := leaderJSON(t, addrs[first.id])
	if lead.Holder != first.id || !lead.Me || lead.Identity != first.id || lead.Lease != "default/replicas" || lead.Token != first.token {
		t.Errorf("leader's /leader = %+v, want holder and identity %s, me, lease default/replicas, token %d", lead, first.id, first.token)
	}
	if _, err := time.Parse(time.RFC3339, lead.Since); err != nil {
		t.Errorf("/leader since %q: %v", lead.Since, err)
	}
	eventually(t, 5*time.Second, "follower's /leader to show the leader", func() bool {
		v := leaderJSON(t, addrs[follower])
		return v.Holder == first.id && !v.Me && v.Identity == follower && v.Token == first.token
	})
	if _, body := httpGet(t, addrs[first.id], "/metrics"); !strings.Contains(body, `leasehold_election_is_leader{lease="default/replicas"} 1`) {
		t.Errorf("/metrics of the leader lacks is_leader 1:\n%s", body)
	}
	if code, body := httpGet(t, addrs[first.id], "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d %s", code, body)
	}
	// LEASEHOLD_TOKEN is the token recorded on the Lease.
	if tok := annotationToken(t, cs, "replicas"); tok != first.token {
		t.Errorf("LEASEHOLD_TOKEN %d, Lease annotation token %d", first.token, tok)
	}
	watch := watchLeader(t, addrs[follower])
	if v := watch.next(t); v.Holder != first.id {
		t.Errorf("first /leader/watch line %+v, want holder %s", v, first.id)
	}

	// A crash: the lease expires and another replica takes over. Let the
	// workload run a little first, so that the overlap check has something
	// to check.
	eventually(t, 10*time.Second, "the workload to run for 300ms", func() bool {
		terms := readTerms(t, log)
		return time.Duration(terms[0].end-terms[0].start) >= 300*time.Millisecond
	})
	procs[first.id].Signal(syscall.SIGKILL)
	second := waitTerm(t, log, []string{first.id})
	if second.token <= first.token {
		t.Errorf("token of the second term %d, not above the first %d", second.token, first.token)
	}
	for v := watch.next(t); v.Holder != second.id; v = watch.next(t) {
	}
	if code, _ := httpGet(t, addrs[second.id], "/readyz"); code != http.StatusOK {
		t.Errorf("new leader %s /readyz: %d", second.id, code)
	}

	// SIGTERM: the workload gets SIGTERM, leasehold exits with its status
	// (7), releases, and the last replica takes over.
	procs[second.id].Signal(syscall.SIGTERM)
	if code := procs[second.id].Wait(t); code != 7 {
		t.Errorf("%s exited %d after SIGTERM, want the workload's 7\n%s", second.id, code, procs[second.id].Stderr)
	}
	third := waitTerm(t, log, []string{first.id, second.id})
	procs[third.id].Signal(syscall.SIGTERM)
	if code := procs[third.id].Wait(t); code != 7 {
		t.Errorf("%s exited %d after SIGTERM, want 7\n%s", third.id, code, procs[third.id].Stderr)
	}
	if h := leaseHolder(t, cs, "replicas"); h != "" {
		t.Errorf("holderIdentity %q after the last leader's SIGTERM, want \"\" (released)", h)
	}
	checkTerms(t, log, []workTerm{first, second, third})
	watch.end(t) // the follower watched has shut down: its stream ended
}

func TestRunExitCodes(t *testing.T) {
	cp := testenv.Start(t)
	cs := testenv.Clientset(t, cp)
	t.Run("usage", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			args []string
			code int
			msg  string
		}{
			{[]string{"run", "--lease", "x"}, ExitUsage, `"--"`},
			{[]string{"run", "--lease", "x", "true"}, ExitUsage, `"--"`},
			{[]string{"run", "--", "true"}, ExitUsage, "--lease is required"},
			{[]string{"run", "--lease", "x", "--lease-duration", "2s", "--renew-deadline", "3s", "--", "true"}, ExitUsage, "--renew-deadline 3s: must be less than --lease-duration 2s"},
			{[]string{"run", "--lease", "x", "--grace", "soon", "--", "true"}, ExitUsage, "--grace"},
			{[]string{"run", "--lease", "x", "--", "leasehold-no-such-command"}, exitNotFound, "not found"},
		} {
			r := cli(t, nil, tc.args...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.msg) {
				t.Errorf("leasehold %q: exit %d, stderr %q; want %d and %q", tc.args, r.code, r.stderr, tc.code, tc.msg)
			}
		}
	})
	t.Run("status", func(t *testing.T) {
		t.Parallel()
		r := cli(t, cp, append(append([]string{"run", "--lease", "status"}, fastTimings...), "--", "sh", "-c", `test -n "$LEASEHOLD_TOKEN" || exit 9; exit 3`)...)
		if r.code != 3 {
			t.Errorf("exit %d, want the command's 3\n%s", r.code, r.stderr)
		}
		if h := leaseHolder(t, cs, "status"); h != "" {
			t.Errorf("holderIdentity %q after the command exited, want \"\" (released)", h)
		}
	})
	t.Run("killed", func(t *testing.T) {
		t.Parallel()
		r := cli(t, cp, append(append([]string{"run", "--lease", "killed"}, fastTimings...), "--", "sh", "-c", "kill -9 $$")...)
		if r.code != 128+9 {
			t.Errorf("exit %d, want 137\n%s", r.code, r.stderr)
		}
	})
	t.Run("exit on loss", func(t *testing.T) {
		t.Parallel()
		p := startCLI(t, cp, append(append([]string{"run", "--lease", "stolen", "--identity", "victim", "--exit-on-loss"}, fastTimings...),
			"--", "sh", "-c", `trap 'echo got TERM; exit 0' TERM; echo running; while :; do sleep 0.1; done`)...)
		p.Stdout.WaitFor(t, "running", 20*time.Second)
		stealLease(t, cs, "stolen", "thief", 30)
		if code := p.Wait(t); code != ExitLost {
			t.Errorf("exit %d, want ExitLost (%d)\n%s", code, ExitLost, p.Stderr)
		}
		if !strings.Contains(p.Stdout.String(), "got TERM") || !strings.Contains(p.Stderr.String(), "lost leadership") {
			t.Errorf("want the command stopped with SIGTERM and a message; stdout %q stderr %q", p.Stdout, p.Stderr)
		}
	})
	t.Run("campaign again", func(t *testing.T) {
		t.Parallel()
		p := startCLI(t, cp, append(append([]string{"run", "--lease", "again"}, fastTimings...),
			"--", "sh", "-c", `trap 'echo got TERM; exit 0' TERM; echo "running $LEASEHOLD_TOKEN"; while :; do sleep 0.1; done`)...)
		p.Stdout.WaitFor(t, "running", 20*time.Second)
		// A holder that never renews: its lease expires after a second, and
		// the stopped command runs again in a new term.
		stealLease(t, cs, "again", "thief", 1)
		p.Stdout.WaitFor(t, "got TERM", 20*time.Second)
		eventually(t, 20*time.Second, "the command to run again", func() bool { return strings.Count(p.Stdout.String(), "running") == 2 })
		var first, second uint64
		if _, err := fmt.Sscanf(p.Stdout.String(), "running %d\ngot TERM\nrunning %d", &first, &second); err != nil || second <= first {
			t.Errorf("stdout %q: want a second term with a higher token (%v)", p.Stdout, err)
		}
		if h := leaseHolder(t, cs, "again"); h == "thief" {
			t.Errorf("holder still %q", h)
		}
	})
	t.Run("forbidden", func(t *testing.T) {
		t.Parallel()
		token, err := cp.ServiceAccountToken(t.Context(), "default", "readonly", readOnlyRules())
		if err != nil {
			t.Fatal(err)
		}
		r := cli(t, cp, append(append([]string{"--token", token, "run", "--lease", "forbidden"}, fastTimings...), "--", "true")...)
		if r.code != ExitError || !strings.Contains(r.stderr, `verb "create"`) {
			t.Errorf("exit %d, stderr %q; want %d and the missing verb \"create\"", r.code, r.stderr, ExitError)
		}
	})
}

func TestRunLockHelp(t *testing.T) {
	for _, c := range []struct{ name, code string }{{"run", "76"}, {"lock", "75"}} {
		r := cli(t, nil, c.name, "--help")
		for _, want := range []string{"Exit status:", "  " + c.code + " ", "Examples:\n  ", "leasehold " + c.name + " ", "LEASEHOLD_TOKEN"} {
			if r.code != 0 || !strings.Contains(r.stdout, want) {
				t.Errorf("%s --help: exit %d, no %q:\n%s", c.name, r.code, want, r.stdout)
			}
		}
	}
}

// workTerm is one leader's run of the workload, from the log.
type workTerm struct {
	id         string
	token      uint64
	start, end int64 // nanoseconds: "start" line, last "beat" or "stop" line
}

var logLine = regexp.MustCompile(`^(start|beat|stop) (\S+) (\d+) (\d+)$`)

// readTerms parses the workload log into terms in order of their start.
func readTerms(t *testing.T, log string) []workTerm {
	t.Helper()
	data, err := os.ReadFile(log)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	byToken := map[uint64]*workTerm{}
	var order []uint64
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		m := logLine.FindStringSubmatch(line)
		if m == nil {
			continue // a line cut short by SIGKILL, or the empty file
		}
		tok, _ := strconv.ParseUint(m[3], 10, 64)
		ts, _ := strconv.ParseInt(m[4], 10, 64)
		tr := byToken[tok]
		if tr == nil {
			if m[1] != "start" {
				t.Fatalf("log: %q before the start of term %d", line, tok)
			}
			tr = &workTerm{id: m[2], token: tok, start: ts}
			byToken[tok] = tr
			order = append(order, tok)
		}
		if m[2] != tr.id {
			t.Fatalf("log: token %d used by %s and %s", tok, tr.id, m[2])
		}
		tr.end = max(tr.end, ts)
	}
	terms := make([]workTerm, 0, len(order))
	for _, tok := range order {
		terms = append(terms, *byToken[tok])
	}
	return terms
}

// waitTerm waits for a term of an identity not in except and returns it.
func waitTerm(t *testing.T, log string, except []string) workTerm {
	t.Helper()
	var found workTerm
	eventually(t, 20*time.Second, "a new leader's workload", func() bool {
		for _, tr := range readTerms(t, log) {
			if !slices.Contains(except, tr.id) {
				found = tr
				return true
			}
		}
		return false
	})
	return found
}

// checkTerms checks that the workload ran in exactly the terms want, one at
// a time, with growing tokens.
func checkTerms(t *testing.T, log string, want []workTerm) {
	t.Helper()
	got := readTerms(t, log)
	if len(got) != len(want) {
		t.Fatalf("%d terms in the log, want %d: %+v", len(got), len(want), got)
	}
	for i := 1; i < len(got); i++ {
		prev, cur := got[i-1], got[i]
		if cur.start <= prev.end {
			t.Errorf("%s's workload (token %d) started %v before %s's (token %d) last ran",
				cur.id, cur.token, time.Duration(prev.end-cur.start), prev.id, prev.token)
		}
		if cur.token <= prev.token {
			t.Errorf("token %d of %s not above %d of %s", cur.token, cur.id, prev.token, prev.id)
		}
	}
}

// leaderStream reads /leader/watch lines in a goroutine joined at cleanup.
type leaderStream struct{ lines chan leaderView }

func watchLeader(t *testing.T, addr string) *leaderStream {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/leader/watch")
	if err != nil {
		t.Fatal(err)
	}
	s := &leaderStream{lines: make(chan leaderView, 100)}
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(s.lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var v leaderView
			if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
				t.Errorf("/leader/watch line %q: %v", sc.Text(), err)
				return
			}
			s.lines <- v
		}
	})
	t.Cleanup(func() {
		resp.Body.Close()
		wg.Wait()
	})
	return s
}

func (s *leaderStream) next(t *testing.T) leaderView {
	t.Helper()
	select {
	case v, ok := <-s.lines:
		if !ok {
			t.Fatal("/leader/watch ended")
		}
		return v
	case <-time.After(20 * time.Second):
		t.Fatal("no /leader/watch line for 20s")
	}
	return leaderView{}
}

// end drains the stream and fails if it does not end within 10 s.
func (s *leaderStream) end(t *testing.T) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-s.lines:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatal("/leader/watch did not end when its server shut down")
		}
	}
}

func httpGet(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func leaderJSON(t *testing.T, addr string) leaderView {
	t.Helper()
	code, body := httpGet(t, addr, "/leader")
	var v leaderView
	if err := json.Unmarshal([]byte(body), &v); code != http.StatusOK || err != nil {
		t.Fatalf("/leader: %d %q %v", code, body, err)
	}
	return v
}

func eventually(t *testing.T, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
