package main

import (
	"context"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/leasehold/leasehold/lease"
	"github.com/leasehold/leasehold/shard"
)

// ShardedOptions configure RunSharded.
type ShardedOptions struct {
	Namespace, Group, Identity string
	Shards                     int
	LeaseDuration              time.Duration
	RenewDeadline, RetryPeriod time.Duration
}

// ShardOf is the shard of the object namespace/name among k.
func ShardOf(namespace, name string, k int) int {
	h := fnv.New32a()
	h.Write([]byte(namespace + "/" + name))
	return int(h.Sum32() % uint32(k))
}

// owned is the set of shards this replica runs, each with its token and a
// count of reconciles in flight: a shard's work function returns (and the
// shard may start elsewhere) only once none of its reconciles runs.
type owned struct {
	mu     sync.Mutex
	shards map[int]*ownedShard
}

type ownedShard struct {
	ctx      context.Context
	token    lease.Token
	inflight sync.WaitGroup
}

// enter returns the shard's context and token and counts a reconcile in,
// or ok false when the shard is not owned here.
func (o *owned) enter(s int) (*ownedShard, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	sh, ok := o.shards[s]
	if !ok || sh.ctx.Err() != nil {
		return nil, false
	}
	sh.inflight.Add(1)
	return sh, true
}

// RunSharded runs one controller-runtime manager per replica that reconciles
// only the ConfigMaps whose namespace/name hash to the shards this replica
// owns in the shard group o.Group. When a shard moves in, its objects are
// queued at once; when it moves out, its reconciles in flight finish (under
// the shard's context) before the new owner may start it, so no object is
// reconciled by two replicas at once. Each stamp carries the shard's token.
func RunSharded(ctx context.Context, cfg *rest.Config, o ShardedOptions) error {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	g, err := shard.New(shard.Config{
		Leases: cs.CoordinationV1(), Namespace: o.Namespace, Name: o.Group, Shards: o.Shards, Identity: o.Identity,
		LeaseDuration: o.LeaseDuration, RenewDeadline: o.RenewDeadline, RetryPeriod: o.RetryPeriod,
	})
	if err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{LeaderElection: false, Metrics: server.Options{BindAddress: "0"}})
	if err != nil {
		return err
	}
	own := &owned{shards: map[int]*ownedShard{}}
	gained := make(chan event.TypedGenericEvent[*corev1.ConfigMap], 1024)
	r := &shardedReconciler{Client: mgr.GetClient(), own: own, k: o.Shards, identity: g.Identity()}
	if err := ctrl.NewControllerManagedBy(mgr).For(&corev1.ConfigMap{}).Named("sharded-stamp-" + o.Identity).
		WatchesRawSource(source.Channel(gained, &handler.TypedEnqueueRequestForObject[*corev1.ConfigMap]{})).
		Complete(r); err != nil {
		return err
	}
	mctx, stopMgr := context.WithCancel(ctx)
	defer stopMgr()
	mgrDone := make(chan error, 1)
	go func() { mgrDone <- mgr.Start(mctx) }()
	defer func() { stopMgr(); <-mgrDone }()
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		return fmt.Errorf("cache did not sync")
	}
	return g.Run(ctx, func(sctx context.Context, s int, tok lease.Token) error {
		sh := &ownedShard{ctx: sctx, token: tok}
		own.mu.Lock()
		own.shards[s] = sh
		own.mu.Unlock()
		// Queue the shard's objects: they may have changed while another
		// replica owned it.
		var cms corev1.ConfigMapList
		if err := mgr.GetClient().List(sctx, &cms); err == nil {
			for i := range cms.Items {
				if ShardOf(cms.Items[i].Namespace, cms.Items[i].Name, o.Shards) == s {
					select {
					case gained <- event.TypedGenericEvent[*corev1.ConfigMap]{Object: &cms.Items[i]}:
					case <-sctx.Done():
					}
				}
			}
		}
		<-sctx.Done()
		own.mu.Lock()
		delete(own.shards, s)
		own.mu.Unlock()
		sh.inflight.Wait() // invariant: the shard's reconciles end before it may move
		return nil
	})
}

// shardedReconciler stamps labelled ConfigMaps of the shards owned here with
// "<identity>/<shard>/<token>".
type shardedReconciler struct {
	client.Client
	own      *owned
	k        int
	identity string
}

func (r *shardedReconciler) Reconcile(_ context.Context, req ctrl.Request) (ctrl.Result, error) {
	s := ShardOf(req.Namespace, req.Name, r.k)
	sh, ok := r.own.enter(s)
	if !ok {
		return ctrl.Result{}, nil // another replica's shard
	}
	defer sh.inflight.Done()
	ctx := sh.ctx // requests end with the shard's context
	var cm corev1.ConfigMap
	if err := r.Get(ctx, req.NamespacedName, &cm); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if cm.Labels["example.leasehold.io/stamp"] != "true" {
		return ctrl.Result{}, nil
	}
	stamp := fmt.Sprintf("%s/%d/%s", r.identity, s, sh.token)
	if cm.Annotations[Annotation] == stamp {
		return ctrl.Result{}, nil
	}
	patch := client.MergeFrom(cm.DeepCopy())
	if cm.Annotations == nil {
		cm.Annotations = map[string]string{}
	}
	cm.Annotations[Annotation] = stamp
	return ctrl.Result{}, r.Patch(ctx, &cm, patch)
}
