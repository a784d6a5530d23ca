package lease

import (
	"fmt"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Token is a fencing token: a number that identifies one term of holding a
// lease and grows with every acquisition. A resource guarded by the lease
// remembers the highest token it has seen and rejects writes that carry a
// lower one; a holder that was paused past its deadline is then harmless.
//
// A token is the resourceVersion of the Lease object that the acquiring
// update replaced. Optimistic concurrency lets each resourceVersion be replaced
// by exactly one successful write, so no two acquisitions share a token, and a
// later acquisition replaces a version written after the earlier acquisition,
// so tokens only grow. Kubernetes backed by etcd draws resourceVersions from
// etcd's single cluster-wide revision counter, which a delete and re-create of
// the Lease does not reset: the new object's versions are higher than any
// version the old one had, so a token from before the re-create is still
// older than every token after it. (Numeric, comparable resourceVersions are
// guaranteed since Kubernetes 1.35, KEP-5504.) What breaks the order is
// restoring etcd from a backup, which rewinds the revision; guarded resources
// must be reset along with it.
//
// The zero Token means "no token".
type Token uint64

// String returns the token in decimal, so any language can compare tokens as
// integers.
func (t Token) String() string { return strconv.FormatUint(uint64(t), 10) }

// IsZero reports whether t is the zero ("no token") value.
func (t Token) IsZero() bool { return t == 0 }

// ParseToken parses the decimal form produced by String.
func ParseToken(s string) (Token, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("lease: invalid fencing token %q: want a positive decimal integer", s)
	}
	if n == 0 {
		return 0, fmt.Errorf("lease: invalid fencing token %q: zero means no token", s)
	}
	return Token(n), nil
}

// TokenOf turns the resourceVersion an acquisition replaces into that term's
// token. It fails when the version is not a positive integer (an apiserver
// not backed by etcd).
func TokenOf(rv string) (Token, error) {
	n, err := strconv.ParseUint(rv, 10, 64)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("lease: resourceVersion %q is not a positive integer; fencing tokens need an etcd-backed apiserver", rv)
	}
	return Token(n), nil
}

// TokenAnnotation records, on the Lease, the token of the current term, the
// leaseTransitions value it was taken at and the holder that took it
// ("<token>/<transitions>/<holder>"). It lets observers report the holder's
// token. It is believed only while the record still shows that holder at
// that transition count: a client-go candidate that takes over moves the
// count on, and a foreign write that changes only holderIdentity (kubectl
// apply, hand-written code) leaves a holder the annotation does not name.
const TokenAnnotation = "leasehold.io/token"

// TokenAnnotationValue is the TokenAnnotation value for a term taken by
// holder at transitions with token t.
func TokenAnnotationValue(t Token, transitions int32, holder string) string {
	return t.String() + "/" + strconv.FormatInt(int64(transitions), 10) + "/" + holder
}

// tokenAnnotation is a parsed TokenAnnotation.
type tokenAnnotation struct {
	token       Token
	transitions int32
	holder      string
}

// parseTokenAnnotation reads "<token>/<transitions>/<holder>"; the holder
// comes last because an identity may itself contain "/". ok is false for
// anything else.
func parseTokenAnnotation(v string) (a tokenAnnotation, ok bool) {
	tok, rest, ok := strings.Cut(v, "/")
	if !ok {
		return a, false
	}
	n, holder, ok := cutCount(rest)
	if !ok {
		return a, false
	}
	t, err := ParseToken(tok)
	if err != nil {
		return a, false
	}
	return tokenAnnotation{token: t, transitions: n, holder: holder}, true
}

// PreferredHolderAnnotation carries a planned handoff
// ("<transitions>/<identity>") on clusters whose apiserver drops
// spec.preferredHolder: the field is kept only with the
// CoordinatedLeaderElection feature gate, which is off by default. Leasehold
// writes both and reads the field first. Like TokenAnnotation it is tied to a
// transition count, so a request outlives neither the term it was made in nor
// a client-go holder that keeps unknown annotations. The identity comes last
// because it may itself contain "/": every value has one reading.
const PreferredHolderAnnotation = "leasehold.io/preferred-holder"

// PreferredHolderValue is the annotation value asking the holder at
// transitions to hand over to identity.
func PreferredHolderValue(identity string, transitions int32) string {
	return strconv.FormatInt(int64(transitions), 10) + "/" + identity
}

// parsePreferredAnnotation returns the identity in v if v was written at
// transitions, else "".
func parsePreferredAnnotation(v string, transitions int32) string {
	n, id, ok := cutCount(v)
	if !ok || n != transitions {
		return ""
	}
	return id
}

// cutCount splits "<transitions>/<identity>"; ok is false unless the count
// is a non-negative int32 and the identity is not empty.
func cutCount(v string) (int32, string, bool) {
	tr, id, ok := strings.Cut(v, "/")
	if !ok || id == "" {
		return 0, "", false
	}
	n, err := strconv.ParseInt(tr, 10, 32)
	if err != nil || n < 0 {
		return 0, "", false
	}
	return int32(n), id, true
}

// OfferAnnotation is a holder's planned handoff in progress
// ("<transitions>/<identity>"): written only by the holder, only after the
// work it guards has stopped, it lets identity take the lease at once by a
// conditional write on the version that carries it. The holder resumes only
// after a write of its own that replaces that version, so the two never
// both act. Like the other annotations it is tied to the transition count:
// the next acquisition, by anyone, ends it.
const OfferAnnotation = "leasehold.io/handoff-offer"

// KindAnnotation records what a Lease is used as by Leasehold locks:
// "mutex", or "semaphore/<permits>" on each permit's Lease. A lock refuses a
// Lease recorded as another kind or permit count: a Mutex and a Semaphore of
// one name, or Semaphores of one name with different counts, would
// otherwise not exclude each other.
const KindAnnotation = "leasehold.io/lock"

// WithAnnotation returns a copy of base whose object carries key=value, for
// the next Update on it.
func WithAnnotation(base *Snapshot, key, value string) *Snapshot {
	cp := *base
	cp.obj = base.obj.DeepCopy()
	if cp.obj.Annotations == nil {
		cp.obj.Annotations = map[string]string{}
	}
	cp.obj.Annotations[key] = value
	if key == KindAnnotation {
		cp.Kind = value
	}
	return &cp
}

// WithOffer returns a copy of base whose object carries an offer of the
// lease to identity (none when identity is ""), for the holder's next
// Update on it.
func WithOffer(base *Snapshot, identity string) *Snapshot {
	cp := *base
	cp.obj = base.obj.DeepCopy()
	if identity == "" {
		delete(cp.obj.Annotations, OfferAnnotation)
	} else {
		if cp.obj.Annotations == nil {
			cp.obj.Annotations = map[string]string{}
		}
		cp.obj.Annotations[OfferAnnotation] = PreferredHolderValue(identity, base.Record.Transitions)
	}
	cp.OfferedTo = identity
	return &cp
}

func setPreferredAnnotation(meta *metav1.ObjectMeta, rec Record) {
	if rec.PreferredHolder == "" {
		delete(meta.Annotations, PreferredHolderAnnotation)
		return
	}
	if meta.Annotations == nil {
		meta.Annotations = map[string]string{}
	}
	meta.Annotations[PreferredHolderAnnotation] = PreferredHolderValue(rec.PreferredHolder, rec.Transitions)
}
