package main

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/leasehold/leasehold/internal/testenv"
	"github.com/leasehold/leasehold/internal/testproc"
	"github.com/leasehold/leasehold/lease"
)

// TestForeignEdit: a Leasehold holder (leasehold lock) takes a Lease, then
// someone changes only holderIdentity, as kubectl apply of an edited
// manifest would (a client-go Update that keeps the annotations). get,
// describe and watch must not credit the new name with the previous
// holder's token, acquire time or renew time.
func TestForeignEdit(t *testing.T) {
	cp := testenv.Start(t)
	cs := testenv.Clientset(t, cp)
	leases := cs.CoordinationV1().Leases("default")

	testproc.Start(t, exec.Command(binary, "--kubeconfig", cp.Kubeconfig, "lock", "fe", "--ttl", "60s", "--", "sleep", "300"))
	var held *lease.Snapshot
	deadline := time.Now().Add(30 * time.Second)
	for held == nil || held.Token.IsZero() {
		if time.Now().After(deadline) {
			t.Fatal("leasehold lock did not take the Lease within 30s")
		}
		time.Sleep(50 * time.Millisecond)
		if l, err := leases.Get(t.Context(), "fe", metav1.GetOptions{}); err == nil {
			held = lease.NewSnapshot(l)
		}
	}
	token, holder := held.Token.String(), held.Record.Holder

	w := startLines(t, cp, "watch", "fe")
	w.expect(t, "held by "+holder+" (token "+token+", transitions ", 30*time.Second)

	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		l, err := leases.Get(t.Context(), "fe", metav1.GetOptions{})
		if err != nil {
			return err
		}
		intruder := "intruder"
		l.Spec.HolderIdentity = &intruder
		_, err = leases.Update(t.Context(), l, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	edited, err := leases.Get(t.Context(), "fe", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s := lease.NewSnapshot(edited); !s.ForeignEdit {
		t.Fatalf("the edit is not seen as foreign: %+v, annotations %v", s.Record, edited.Annotations)
	}

	line := w.expect(t, "intruder named as holder without acquiring", 10*time.Second)
	for _, want := range []string{"was " + holder, "the acquire and renew times are the previous holder's", "token unknown"} {
		if !strings.Contains(line, want) {
			t.Errorf("watch line lacks %q: %s", want, line)
		}
	}
	if strings.Contains(line, "took over") || strings.Contains(line, token) {
		t.Errorf("watch credits intruder with a takeover or with token %s: %s", token, line)
	}

	r := cli(t, cp, "get", "fe", "-o", "wide").ok(t)
	row := strings.Fields(strings.Split(r.stdout, "\n")[1])
	// NAME HOLDER STATE EXPIRES-IN HELD-FOR TRANSITIONS AGE TOKEN PREFERRED DURATION
	if len(row) != 10 || row[1] != "intruder" || row[4] != "<unknown>" || row[7] != "<unknown>" {
		t.Errorf("get -o wide: want holder intruder, HELD FOR and TOKEN <unknown>:\n%s", r.stdout)
	}

	r = cli(t, cp, "describe", "fe").ok(t)
	for _, want := range []string{
		"Holder:           intruder\n",
		"Fencing Token:    <unknown>\n",
		", by the previous holder\n",
		"edited without acquiring",
		"the acquire and renew times belong to the previous holder",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("describe lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "Fencing Token:    "+token) {
		t.Errorf("describe credits intruder with token %s:\n%s", token, r.stdout)
	}

	// A watch that starts after the edit says so on its first line.
	w2 := startLines(t, cp, "watch", "fe")
	first := w2.expect(t, "lease default/fe:", 30*time.Second)
	if !strings.Contains(first, "held by intruder (token unknown,") || !strings.Contains(first, "named as holder without acquiring") {
		t.Errorf("first line of a later watch: %s", first)
	}
}
