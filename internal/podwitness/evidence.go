// Package podwitness gives the election the kubelet's own evidence that a
// leader's container has stopped, so that a follower can take over within
// about a second of a container crash instead of a whole lease duration.
//
// # What counts as evidence
//
// A holder that runs in a Pod publishes, with its acquiring write, the exact
// container instance it runs in: Pod namespace, name and UID, container
// name, and the container ID the kubelet reports for it
// (lease.InstanceAnnotation). A Witness watches that one Pod and reports the
// instance stopped only when the Pod object, with the published UID, shows
// a container status of that name whose state or lastState is "terminated"
// with that same container ID. The kubelet writes that only after the
// container runtime reported the container's init process exited; the
// runtime kills the rest of the container's processes with it (its own PID
// namespace and cgroup). A terminated container ID never runs again: a
// restart is a new container with a new ID. So nothing of that instance can
// renew the lease, or act under it, after the evidence was written.
//
// Everything else is silence, and silence falls back to the lease duration,
// exactly as without a Witness:
//   - the Pod still shows the container running or waiting, or shows
//     another container ID terminated (an earlier run);
//   - the node is NotReady, the kubelet stopped or cut off: it writes
//     nothing, so the status stays as it was;
//   - the Pod was force-deleted (--grace-period=0 --force): the object goes
//     away without the kubelet confirming anything; a Pod deleted after the
//     kubelet confirmed the termination was already evidence;
//   - a Pod of the same name with another UID (re-created), or no such Pod;
//   - the holder published no instance (not in a Pod, or a client-go
//     holder), or a foreign writer edited the record (no credited token);
//   - this process may not get or watch Pods (said once, in the log and in
//     a metric).
//
// # What fencing still covers
//
// Requests the holder sent before it died may still arrive: a renewal is
// conditional on the version it read, so it either lands before the
// follower's acquiring write (which then conflicts, re-reads, and takes the
// next version on the same evidence) or fails. Writes to other systems in
// flight carry the dead holder's token, lower than the new holder's, and a
// resource that checks tokens rejects them once the new holder has
// written.
//
// The argument assumes that only the kubelet writes a Pod's container
// statuses (pods/status). Anyone who can update pods/status can forge
// evidence, as they could forge a Lease: grant it to no one else.
package podwitness

import (
	corev1 "k8s.io/api/core/v1"

	"github.com/leasehold/leasehold/lease"
)

// Confirms reports whether pod, as last seen (a deleted Pod's final state
// included), carries the kubelet's evidence that inst has terminated.
func Confirms(pod *corev1.Pod, inst lease.Instance) bool {
	if pod == nil || pod.Namespace != inst.Namespace || pod.Name != inst.Pod || pod.UID != inst.PodUID {
		return false
	}
	for _, list := range [][]corev1.ContainerStatus{pod.Status.ContainerStatuses, pod.Status.InitContainerStatuses, pod.Status.EphemeralContainerStatuses} {
		for _, cs := range list {
			if cs.Name != inst.Container {
				continue
			}
			if terminated(cs.State, inst.ContainerID) || terminated(cs.LastTerminationState, inst.ContainerID) {
				return true
			}
		}
	}
	return false
}

func terminated(s corev1.ContainerState, id string) bool {
	return s.Terminated != nil && s.Terminated.ContainerID == id
}
