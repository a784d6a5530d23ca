// Package fakelease is an in-memory Leases API for unit tests: it keeps a
// global resourceVersion counter like etcd, rejects stale updates with 409,
// serves watches (with 410 Gone for compacted versions) and lets a test inject
// errors per verb. It implements only what Leasehold uses (get, list,
// create, update, delete, watch); other methods panic.
package fakelease

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"sync"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
)

var gr = schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}

type key struct{ ns, name string }

type event struct {
	rv  uint64
	key key
	ev  watch.Event
	old *coordinationv1.Lease // the version before, nil when none
}

// Server is the fake API. Safe for concurrent use.
type Server struct {
	mu        sync.Mutex
	rv        uint64
	uid       int
	objs      map[key]*coordinationv1.Lease
	history   []event
	compacted uint64
	watchers  map[*fakeWatch]struct{}
	fail      map[string]func(name string) error
	counts    map[string]int
	hold      *barrier
	held      *createHold
	versions  map[key][]*coordinationv1.Lease // every version stored, in order
	delivered int                             // change events sent to watches
}

// barrier holds matching updates until n of them have arrived.
type barrier struct {
	n, arrived int
	match      func(*coordinationv1.Lease) bool
	open       chan struct{}
}

var _ coordinationv1client.LeasesGetter = (*Server)(nil)

// New returns an empty Server.
func New() *Server {
	return &Server{
		rv: 100, objs: map[key]*coordinationv1.Lease{}, watchers: map[*fakeWatch]struct{}{},
		fail: map[string]func(string) error{}, counts: map[string]int{},
	}
}

// Fail makes every request with verb (get, list, create, update, delete, watch)
// return fn's error when fn returns non-nil. fn nil clears it.
func (s *Server) Fail(verb string, fn func(name string) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if fn == nil {
		delete(s.fail, verb)
		return
	}
	s.fail[verb] = fn
}

// Count returns how many requests with verb were served (including failed).
// "update <name> <holder>" counts the updates of Lease name whose record
// names holder.
func (s *Server) Count(verb string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[verb]
}

// Versions returns every version of ns/name stored so far, oldest first
// (compaction does not forget them).
func (s *Server) Versions(ns, name string) []*coordinationv1.Lease {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*coordinationv1.Lease
	for _, l := range s.versions[key{ns, name}] {
		out = append(out, l.DeepCopy())
	}
	return out
}

// Conflicts returns how many updates were refused with 409 so far.
func (s *Server) Conflicts() int { return s.Count("update-conflict") }

// HoldUpdates makes the next n updates that match wait, before they are
// served, until all n have arrived; then they proceed together. It forces a
// race: n writers that read the same version all write on it, exactly one
// wins and the others get 409, whatever order the watch would have told
// them about each other's writes. match nil matches every update.
func (s *Server) HoldUpdates(n int, match func(*coordinationv1.Lease) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if match == nil {
		match = func(*coordinationv1.Lease) bool { return true }
	}
	s.hold = &barrier{n: n, match: match, open: make(chan struct{})}
}

// createHold keeps matching creates waiting until open is closed.
type createHold struct {
	match func(*coordinationv1.Lease) bool
	open  chan struct{}
}

// HoldCreates makes every create that matches wait, before it is served,
// until the returned function is called: a create in flight for as long as
// the test wants.
func (s *Server) HoldCreates(match func(*coordinationv1.Lease) bool) (release func()) {
	h := &createHold{match: match, open: make(chan struct{})}
	s.mu.Lock()
	s.held = h
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			if s.held == h {
				s.held = nil
			}
			s.mu.Unlock()
			close(h.open)
		})
	}
}

// gate blocks an update at the barrier set by HoldUpdates, if it matches.
func (s *Server) gate(in *coordinationv1.Lease) {
	s.mu.Lock()
	b := s.hold
	if b == nil || !b.match(in) {
		s.mu.Unlock()
		return
	}
	b.arrived++
	if b.arrived == b.n {
		s.hold = nil
		close(b.open)
	}
	s.mu.Unlock()
	<-b.open
}

// Compact forgets history up to now: watches from older versions get 410.
func (s *Server) Compact() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.compacted = s.rv
	s.history = nil
}

// CloseWatches ends every open watch, as an apiserver restart would.
func (s *Server) CloseWatches() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for w := range s.watchers {
		w.closeLocked()
	}
}

// Lease returns a copy of the stored Lease, or nil.
func (s *Server) Lease(ns, name string) *coordinationv1.Lease {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.objs[key{ns, name}]; l != nil {
		return l.DeepCopy()
	}
	return nil
}

// List returns every Lease of namespace ns, sorted by name.
func (s *Server) List(ns string) []*coordinationv1.Lease {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*coordinationv1.Lease
	for k, l := range s.objs {
		if k.ns == ns {
			out = append(out, l.DeepCopy())
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Put stores l as if another client wrote it (create or unconditional update).
func (s *Server) Put(l *coordinationv1.Lease) *coordinationv1.Lease {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := key{l.Namespace, l.Name}
	cp := l.DeepCopy()
	typ := watch.Modified
	if old := s.objs[k]; old == nil {
		typ = watch.Added
		s.uid++
		cp.UID = types.UID(fmt.Sprintf("uid-%d", s.uid))
	} else {
		cp.UID = old.UID
	}
	s.storeLocked(k, cp, typ)
	return cp.DeepCopy()
}

// Delete removes a Lease as if another client deleted it.
func (s *Server) Delete(ns, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := key{ns, name}
	old := s.objs[k]
	if old == nil {
		return
	}
	delete(s.objs, k)
	s.rv++
	gone := old.DeepCopy()
	gone.ResourceVersion = strconv.FormatUint(s.rv, 10)
	s.publishLocked(k, watch.Event{Type: watch.Deleted, Object: gone}, old)
}

func (s *Server) storeLocked(k key, l *coordinationv1.Lease, typ watch.EventType) {
	s.rv++
	l.ResourceVersion = strconv.FormatUint(s.rv, 10)
	old := s.objs[k]
	s.objs[k] = l
	if s.versions == nil {
		s.versions = map[key][]*coordinationv1.Lease{}
	}
	s.versions[k] = append(s.versions[k], l.DeepCopy())
	s.publishLocked(k, watch.Event{Type: typ, Object: l.DeepCopy()}, old)
}

func (s *Server) publishLocked(k key, ev watch.Event, old *coordinationv1.Lease) {
	e := event{rv: s.rv, key: k, ev: ev, old: old}
	s.history = append(s.history, e)
	for w := range s.watchers {
		if ev, ok := w.filter(e); ok {
			s.delivered++
			w.sendLocked(ev)
		}
	}
}

// Delivered returns how many change events have been sent to open watches
// (one per watch per event; initial events and replays not counted): the
// wake-ups that writes cause.
func (s *Server) Delivered() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.delivered
}

// since returns the events after version from (the history is in
// version order), without scanning the older ones.
func (s *Server) since(from uint64) []event {
	i := sort.Search(len(s.history), func(i int) bool { return s.history[i].rv > from })
	return s.history[i:]
}

// filter returns the event as watch w sees it: a name watch sees its
// Lease's events; a label-selected watch sees an object entering the
// selection as ADDED and leaving it as DELETED, as the apiserver does.
func (w *fakeWatch) filter(e event) (watch.Event, bool) {
	if w.sel == nil {
		return e.ev, e.key == w.key
	}
	if e.key.ns != w.key.ns {
		return e.ev, false
	}
	was := e.old != nil && w.sel.Matches(labels.Set(e.old.Labels))
	l, _ := e.ev.Object.(*coordinationv1.Lease)
	is := e.ev.Type != watch.Deleted && l != nil && w.sel.Matches(labels.Set(l.Labels))
	switch {
	case is && !was:
		return watch.Event{Type: watch.Added, Object: e.ev.Object}, true
	case is:
		return e.ev, true
	case was && l != nil:
		gone := l.DeepCopy()
		return watch.Event{Type: watch.Deleted, Object: gone}, true
	}
	return e.ev, false
}

func (s *Server) request(verb, name string) error {
	s.counts[verb]++
	if fn := s.fail[verb]; fn != nil {
		return fn(name)
	}
	return nil
}

// Leases implements coordinationv1client.LeasesGetter.
func (s *Server) Leases(namespace string) coordinationv1client.LeaseInterface {
	return &leases{s: s, ns: namespace}
}

type leases struct {
	coordinationv1client.LeaseInterface // unimplemented methods panic
	s                                   *Server
	ns                                  string
}

func (l *leases) Get(_ context.Context, name string, _ metav1.GetOptions) (*coordinationv1.Lease, error) {
	s := l.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.request("get", name); err != nil {
		return nil, err
	}
	obj := s.objs[key{l.ns, name}]
	if obj == nil {
		return nil, apierrors.NewNotFound(gr, name)
	}
	return obj.DeepCopy(), nil
}

func (l *leases) Create(_ context.Context, in *coordinationv1.Lease, _ metav1.CreateOptions) (*coordinationv1.Lease, error) {
	s := l.s
	s.mu.Lock()
	if h := s.held; h != nil && h.match(in) {
		s.mu.Unlock()
		<-h.open
		s.mu.Lock()
	}
	defer s.mu.Unlock()
	if err := s.request("create", in.Name); err != nil {
		return nil, err
	}
	k := key{l.ns, in.Name}
	if s.objs[k] != nil {
		return nil, apierrors.NewAlreadyExists(gr, in.Name)
	}
	cp := in.DeepCopy()
	cp.Namespace = l.ns
	s.uid++
	cp.UID = types.UID(fmt.Sprintf("uid-%d", s.uid))
	s.storeLocked(k, cp, watch.Added)
	return cp.DeepCopy(), nil
}

func (l *leases) Update(_ context.Context, in *coordinationv1.Lease, _ metav1.UpdateOptions) (*coordinationv1.Lease, error) {
	s := l.s
	s.gate(in)
	s.mu.Lock()
	defer s.mu.Unlock()
	if h := in.Spec.HolderIdentity; h != nil {
		s.counts["update "+in.Name+" "+*h]++
	}
	if err := s.request("update", in.Name); err != nil {
		return nil, err
	}
	k := key{l.ns, in.Name}
	old := s.objs[k]
	if old == nil {
		return nil, apierrors.NewNotFound(gr, in.Name)
	}
	if in.ResourceVersion != old.ResourceVersion {
		s.counts["update-conflict"]++
		return nil, apierrors.NewConflict(gr, in.Name, fmt.Errorf("the object has been modified; please apply your changes to the latest version and try again"))
	}
	cp := in.DeepCopy()
	cp.UID = old.UID
	s.storeLocked(k, cp, watch.Modified)
	return cp.DeepCopy(), nil
}

func (l *leases) Delete(_ context.Context, name string, opts metav1.DeleteOptions) error {
	s := l.s
	s.mu.Lock()
	err := s.request("delete", name)
	obj := s.objs[key{l.ns, name}]
	s.mu.Unlock()
	if err != nil {
		return err
	}
	if obj == nil {
		return apierrors.NewNotFound(gr, name)
	}
	if p := opts.Preconditions; p != nil && p.UID != nil && *p.UID != obj.UID {
		return apierrors.NewConflict(gr, name, fmt.Errorf("precondition failed: UID in precondition: %v, UID in object meta: %v", *p.UID, obj.UID))
	}
	s.Delete(l.ns, name)
	return nil
}

// List serves a list of the namespace's Leases in name order, as the
// apiserver does: selected by label or by a metadata.name field selector,
// at most opts.Limit of them (0: all), continuing after the name the
// Continue token holds. Count("list-item") counts the Leases returned.
func (l *leases) List(_ context.Context, opts metav1.ListOptions) (*coordinationv1.LeaseList, error) {
	s := l.s
	lsel, err := labels.Parse(opts.LabelSelector)
	if err != nil {
		return nil, apierrors.NewBadRequest(err.Error())
	}
	fsel, err := fields.ParseSelector(opts.FieldSelector)
	if err != nil {
		return nil, apierrors.NewBadRequest(err.Error())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.request("list", opts.LabelSelector+opts.FieldSelector); err != nil {
		return nil, err
	}
	var names []string
	for k, obj := range s.objs {
		if k.ns == l.ns && k.name > opts.Continue && lsel.Matches(labels.Set(obj.Labels)) &&
			fsel.Matches(fields.Set{"metadata.name": k.name, "metadata.namespace": k.ns}) {
			names = append(names, k.name)
		}
	}
	sort.Strings(names)
	out := &coordinationv1.LeaseList{ListMeta: metav1.ListMeta{ResourceVersion: strconv.FormatUint(s.rv, 10)}}
	if opts.Limit > 0 && int64(len(names)) > opts.Limit {
		names = names[:opts.Limit]
		out.Continue = names[len(names)-1]
	}
	for _, n := range names {
		out.Items = append(out.Items, *s.objs[key{l.ns, n}].DeepCopy())
	}
	s.counts["list-item"] += len(names)
	return out, nil
}

func (l *leases) Watch(_ context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	s := l.s
	if opts.LabelSelector != "" {
		return l.watchSelected(opts)
	}
	sel, err := fields.ParseSelector(opts.FieldSelector)
	if err != nil {
		return nil, apierrors.NewBadRequest(err.Error())
	}
	name, ok := sel.RequiresExactMatch("metadata.name")
	if !ok {
		return nil, apierrors.NewBadRequest("fakelease: watch needs a metadata.name field selector or a label selector")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.request("watch", name); err != nil {
		return nil, err
	}
	k := key{l.ns, name}
	w := &fakeWatch{s: s, key: k, ch: make(chan watch.Event, 1024)}
	switch {
	case opts.SendInitialEvents != nil && *opts.SendInitialEvents:
		// The current state (if any), then the bookmark that ends it.
		if obj := s.objs[k]; obj != nil {
			w.sendLocked(watch.Event{Type: watch.Added, Object: obj.DeepCopy()})
		}
		mark := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{
			ResourceVersion: strconv.FormatUint(s.rv, 10),
			Annotations:     map[string]string{"k8s.io/initial-events-end": "true"},
		}}
		w.sendLocked(watch.Event{Type: watch.Bookmark, Object: mark})
	case opts.ResourceVersion == "":
		if obj := s.objs[k]; obj != nil {
			w.sendLocked(watch.Event{Type: watch.Added, Object: obj.DeepCopy()})
		}
	default:
		from, err := strconv.ParseUint(opts.ResourceVersion, 10, 64)
		if err != nil {
			return nil, apierrors.NewBadRequest("invalid resourceVersion " + opts.ResourceVersion)
		}
		if from < s.compacted {
			return nil, apierrors.NewResourceExpired(fmt.Sprintf("too old resource version: %d (%d)", from, s.compacted))
		}
		for _, e := range s.since(from) {
			if e.key == k {
				w.sendLocked(e.ev)
			}
		}
	}
	s.watchers[w] = struct{}{}
	return w, nil
}

// watchSelected serves a label-selected watch of a namespace, with the
// initial state first when opts.SendInitialEvents is set (ended by a
// bookmark annotated k8s.io/initial-events-end, as the apiserver does).
func (l *leases) watchSelected(opts metav1.ListOptions) (watch.Interface, error) {
	s := l.s
	sel, err := labels.Parse(opts.LabelSelector)
	if err != nil {
		return nil, apierrors.NewBadRequest(err.Error())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.request("watch", "-l "+opts.LabelSelector); err != nil {
		return nil, err
	}
	w := &fakeWatch{s: s, key: key{ns: l.ns}, sel: sel, ch: make(chan watch.Event, 4096)}
	initial := opts.SendInitialEvents != nil && *opts.SendInitialEvents
	switch {
	case initial:
		names := make([]string, 0, len(s.objs))
		for k, obj := range s.objs {
			if k.ns == l.ns && sel.Matches(labels.Set(obj.Labels)) {
				names = append(names, k.name)
			}
		}
		sort.Strings(names)
		for _, n := range names {
			w.sendLocked(watch.Event{Type: watch.Added, Object: s.objs[key{l.ns, n}].DeepCopy()})
		}
		// Count("initial-event"): objects sent as initial events; with
		// ":"+selector, those of watches with that label selector.
		s.counts["initial-event"] += len(names)
		s.counts["initial-event:"+opts.LabelSelector] += len(names)
		mark := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{
			ResourceVersion: strconv.FormatUint(s.rv, 10),
			Annotations:     map[string]string{"k8s.io/initial-events-end": "true"},
		}}
		w.sendLocked(watch.Event{Type: watch.Bookmark, Object: mark})
	case opts.ResourceVersion == "":
	default:
		from, err := strconv.ParseUint(opts.ResourceVersion, 10, 64)
		if err != nil {
			return nil, apierrors.NewBadRequest("invalid resourceVersion " + opts.ResourceVersion)
		}
		if from < s.compacted {
			return nil, apierrors.NewResourceExpired(fmt.Sprintf("too old resource version: %d (%d)", from, s.compacted))
		}
		for _, e := range s.since(from) {
			if ev, ok := w.filter(e); ok {
				w.sendLocked(ev)
			}
		}
	}
	s.watchers[w] = struct{}{}
	return w, nil
}

type fakeWatch struct {
	s      *Server
	sel    labels.Selector // nil: a watch of the one Lease key.name
	key    key
	ch     chan watch.Event
	closed bool
}

func (w *fakeWatch) sendLocked(ev watch.Event) {
	if w.closed {
		return
	}
	select {
	case w.ch <- ev:
	default: // a consumer this far behind is treated as a broken watch
		w.closeLocked()
	}
}

func (w *fakeWatch) closeLocked() {
	if !w.closed {
		w.closed = true
		close(w.ch)
		delete(w.s.watchers, w)
	}
}

func (w *fakeWatch) Stop() {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	w.closeLocked()
}

func (w *fakeWatch) ResultChan() <-chan watch.Event { return w.ch }
