package main

import (
	"context"
	"fmt"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/cli-runtime/pkg/printers"
	"k8s.io/client-go/kubernetes"
	watchtools "k8s.io/client-go/tools/watch"
)

// watchChanges is `get -w` after the first print: it watches the Leases
// that were read (from version rv on) and prints each change, until ctx
// ends (nil) or the watch fails for good. A dropped watch is re-established
// from the last version seen, so no change is missed.
func (g *getCmd) watchChanges(ctx context.Context, cs kubernetes.Interface, ns string, names []string, rv string, p, tp printers.ResourcePrinter) error {
	opts := metav1.ListOptions{LabelSelector: g.selector}
	if len(names) == 1 {
		opts.FieldSelector = fields.OneTermEqualSelector("metadata.name", names[0]).String()
	}
	leases := cs.CoordinationV1().Leases(ns)
	rw, err := watchtools.NewRetryWatcherWithContext(ctx, rv, watcherFunc(func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
		o.LabelSelector, o.FieldSelector = opts.LabelSelector, opts.FieldSelector
		return leases.Watch(ctx, o)
	}))
	if err != nil {
		return fmt.Errorf("watch leases: %w", err)
	}
	defer func() {
		rw.Stop()
		<-rw.Done()
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-rw.ResultChan():
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("watch leases: ended")
			}
			switch l, isLease := ev.Object.(*coordinationv1.Lease); {
			case ev.Type == watch.Error:
				err := apierrors.FromObject(ev.Object)
				if ns == metav1.NamespaceAll {
					return listError("leases", coordinationv1.GroupName, ns, err)
				}
				return fmt.Errorf("watch leases in namespace %q: %w", ns, err)
			case isLease && ev.Type != watch.Bookmark:
				if err := g.printChange(g.io.Out, p, tp, string(ev.Type), l); err != nil {
					return err
				}
			}
		}
	}
}

// watcherFunc is a function that starts a watch, as the RetryWatcher wants it.
type watcherFunc func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)

func (f watcherFunc) WatchWithContext(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	return f(ctx, opts)
}
