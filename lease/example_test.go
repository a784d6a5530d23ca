package lease_test

import (
	"encoding/json"
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"

	"github.com/leasehold/leasehold/lease"
)

// A Lease written by a client-go candidate reads as a Record, with times in
// UTC at the microsecond precision they have on the wire.
func ExampleFromSpec() {
	const written = `{
	  "apiVersion": "coordination.k8s.io/v1",
	  "kind": "Lease",
	  "metadata": {"name": "my-controller", "namespace": "kube-system"},
	  "spec": {
	    "holderIdentity": "node-1_5f2c",
	    "leaseDurationSeconds": 15,
	    "acquireTime": "2025-03-01T12:00:00.000000Z",
	    "renewTime": "2025-03-01T12:00:10.123456Z",
	    "leaseTransitions": 4
	  }
	}`
	var l coordinationv1.Lease
	if err := json.Unmarshal([]byte(written), &l); err != nil {
		fmt.Println(err)
		return
	}
	rec := lease.FromSpec(l.Spec)
	fmt.Println("holder:", rec.Holder, "held:", rec.Held())
	fmt.Println("duration:", rec.LeaseDuration)
	fmt.Println("renewed:", rec.RenewTime.Format(time.RFC3339Nano))
	fmt.Println("transitions:", rec.Transitions)
	// Output:
	// holder: node-1_5f2c held: true
	// duration: 15s
	// renewed: 2025-03-01T12:00:10.123456Z
	// transitions: 4
}

// Releasing keeps the transition count and writes the one-second duration by
// which client-go candidates know they may take over at once.
func ExampleRecord_Released() {
	acquired := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	rec := lease.Record{
		Holder:        "pod-a",
		LeaseDuration: 15 * time.Second,
		AcquireTime:   acquired,
		RenewTime:     acquired.Add(10 * time.Second),
		Transitions:   3,
	}
	spec := rec.Released(acquired.Add(12 * time.Second)).ToSpec()
	fmt.Printf("holderIdentity=%q leaseDurationSeconds=%d leaseTransitions=%d\n",
		*spec.HolderIdentity, *spec.LeaseDurationSeconds, *spec.LeaseTransitions)
	fmt.Println("renewTime:", spec.RenewTime.UTC().Format(time.RFC3339))
	// Output:
	// holderIdentity="" leaseDurationSeconds=1 leaseTransitions=3
	// renewTime: 2025-03-01T12:00:12Z
}

// Tokens compare as numbers; a guarded resource keeps the highest one it has
// seen and rejects writes that carry a lower one.
func ExampleParseToken() {
	highest := lease.Token(0)
	for _, header := range []string{"9", "10", "9", "11"} {
		tok, err := lease.ParseToken(header)
		if err != nil {
			fmt.Println(err)
			continue
		}
		if tok < highest {
			fmt.Printf("reject write with token %s: %s already seen\n", tok, highest)
			continue
		}
		highest = tok
		fmt.Println("accept write with token", tok)
	}
	if _, err := lease.ParseToken("0"); err != nil {
		fmt.Println(err)
	}
	// Output:
	// accept write with token 9
	// accept write with token 10
	// reject write with token 9: 10 already seen
	// accept write with token 11
	// lease: invalid fencing token "0": zero means no token
}
