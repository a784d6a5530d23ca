package lease

import (
	"fmt"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/types"
)

// Instance names the exact container instance that holds a lease: a Pod
// (namespace, name and UID, so that a Pod re-created under the same name
// is another Pod), one of its containers, and that container's ID as the
// kubelet reports it in the Pod's status ("containerd://<id>"). A
// restarted container gets a new ID, so an Instance names one run of one
// process tree, never a later one.
type Instance struct {
	Namespace, Pod string
	PodUID         types.UID
	Container      string
	ContainerID    string
}

// InstanceAnnotation records which container instance took the lease
// ("<transitions>/<namespace>/<pod>/<pod UID>/<container>/<container ID>"),
// written with the acquiring write and kept by the holder's renewals.
// Followers that can read Pods use it to take over before expiry once the
// kubelet reports that this instance terminated. Like the other annotations
// it is tied to the transition count, and it is believed only while the
// token annotation credits the record's holder (no foreign edit).
const InstanceAnnotation = "leasehold.io/holder-instance"

// Validate reports a field that is empty or cannot be written in the
// annotation.
func (i Instance) Validate() error {
	for _, f := range []struct{ name, v string }{
		{"namespace", i.Namespace}, {"pod", i.Pod}, {"pod UID", string(i.PodUID)}, {"container", i.Container}, {"container ID", i.ContainerID},
	} {
		if f.v == "" {
			return fmt.Errorf("instance: %s is empty", f.name)
		}
		if f.name != "container ID" && strings.Contains(f.v, "/") {
			return fmt.Errorf("instance: %s %q contains \"/\"", f.name, f.v)
		}
	}
	return nil
}

// String is "namespace/pod/container (container ID)", for messages.
func (i Instance) String() string {
	return fmt.Sprintf("%s/%s/%s (%s)", i.Namespace, i.Pod, i.Container, i.ContainerID)
}

// InstanceValue is the InstanceAnnotation value for a term taken at
// transitions by instance i.
func InstanceValue(i Instance, transitions int32) string {
	return strings.Join([]string{strconv.FormatInt(int64(transitions), 10), i.Namespace, i.Pod, string(i.PodUID), i.Container, i.ContainerID}, "/")
}

// parseInstance reads an InstanceAnnotation value written at transitions;
// ok is false for another count or anything malformed. The container ID
// comes last because it contains "/".
func parseInstance(v string, transitions int32) (Instance, bool) {
	parts := strings.SplitN(v, "/", 6)
	if len(parts) != 6 {
		return Instance{}, false
	}
	n, err := strconv.ParseInt(parts[0], 10, 32)
	if err != nil || int32(n) != transitions || n < 0 {
		return Instance{}, false
	}
	i := Instance{Namespace: parts[1], Pod: parts[2], PodUID: types.UID(parts[3]), Container: parts[4], ContainerID: parts[5]}
	if i.Validate() != nil {
		return Instance{}, false
	}
	return i, true
}
