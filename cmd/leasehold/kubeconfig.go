package main

import (
	"errors"
	"fmt"

	"k8s.io/client-go/tools/clientcmd"
)

// checkConfigFlags checks the kubeconfig flags before client-go reads them,
// so that a bad value is reported naming the flag and the fix, as a usage
// error, rather than as "invalid configuration" or "no usable cluster
// configuration".
func (a *app) checkConfigFlags() error {
	f := a.flags
	var errs []error
	if f.Timeout != nil && *f.Timeout != "" {
		if _, err := clientcmd.ParseTimeout(*f.Timeout); err != nil {
			errs = append(errs, fmt.Errorf("--request-timeout %q: not a duration; give seconds (30) or a number with a unit (30s, 1m), 0 for none", *f.Timeout))
		}
	}
	raw, err := f.ToRawKubeConfigLoader().RawConfig()
	if err != nil {
		return errors.Join(append(errs, err)...) // an unreadable kubeconfig names its file
	}
	missing := func(flag string, value *string, exists func(string) bool, list string) {
		if value != nil && *value != "" && !exists(*value) {
			errs = append(errs, fmt.Errorf("--%s %q: no such %s in the kubeconfig (%s lists them)", flag, *value, flag, list))
		}
	}
	missing("context", f.Context, func(n string) bool { return raw.Contexts[n] != nil }, "kubectl config get-contexts")
	missing("cluster", f.ClusterName, func(n string) bool { return raw.Clusters[n] != nil }, "kubectl config get-clusters")
	missing("user", f.AuthInfoName, func(n string) bool { return raw.AuthInfos[n] != nil }, "kubectl config get-users")
	if err := errors.Join(errs...); err != nil {
		return withCode(ExitUsage, err)
	}
	return nil
}
