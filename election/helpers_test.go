package election_test

import (
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/leasehold/leasehold/lease"
)

func leaseObj(holder string, seconds int32, transitions int32, now time.Time) *coordinationv1.Lease {
	rec := lease.Record{Holder: holder, LeaseDuration: time.Duration(seconds) * time.Second, AcquireTime: now, RenewTime: now, Transitions: transitions}
	return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: rec.ToSpec()}
}
