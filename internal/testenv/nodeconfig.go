package testenv

import (
	"fmt"
	"path/filepath"
)

// containerdConfig: own root, state and socket; CRI with the local pause
// image; cgroupfs; overlayfs. restrict_oom_score_adj keeps runc from
// lowering oom_score_adj, which needs CAP_SYS_RESOURCE (missing in some
// sandboxes: runc then fails with "can't get final child's PID from pipe").
func containerdConfig(dir, sock string) string {
	d := filepath.Join(dir, "containerd")
	return fmt.Sprintf(`version = 2
root = %q
state = %q

[grpc]
  address = %q

[ttrpc]
  address = %q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  enable_selinux = false
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = %q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
`, filepath.Join(d, "root"), filepath.Join(d, "state"), sock, sock+".ttrpc", PauseImage,
		filepath.Join(d, "runc"), cniBinDir, filepath.Join(dir, "cni", "net.d"))
}

// cniConfig: a bridge in the node's namespace, addresses from podCIDR.
func cniConfig(dir, podCIDR string) string {
	return fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "leasehold",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "lhbr0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": %q}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": %q
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, podCIDR, filepath.Join(dir, "cni", "ipam"))
}

// kubeletConfig: cgroupfs below cgroupRoot, authentication by client
// certificate (the apiserver's) and authorization by the apiserver.
func kubeletConfig(sock, nodeIP, clientCA, cgroupRoot string) string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: %q
failSwapOn: false
containerRuntimeEndpoint: unix://%s
address: %s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: %q
authorization:
  mode: Webhook
resolvConf: /etc/resolv.conf
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 10Mi
  nodefs.available: 10Mi
  imagefs.available: 10Mi
  nodefs.inodesFree: "1%%"
`, cgroupRoot, sock, nodeIP, clientCA)
}

// proxyConfig: iptables mode; the conntrack settings are left as they are
// (zero), which in a network namespace cannot be set anyway.
func proxyConfig(kubeconfig, podCIDR string) string {
	return fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: %q
mode: iptables
hostnameOverride: %s
clusterCIDR: %s
healthzBindAddress: ""
metricsBindAddress: "127.0.0.1:10249"
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`, kubeconfig, NodeName, podCIDR)
}
