// Package e2e runs Leasehold's manifests (deploy/) as pods on a real
// single-node cluster (internal/testenv.StartCluster) and measures the
// leadership changes users meet in real clusters: a pod deleted, a rollout,
// a container killed. Its tests and the real-pod benchmark need the build
// tag e2e, root and the node's packages (`make e2e`, `make bench-node`).
package e2e
