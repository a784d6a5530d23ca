package testenv

import (
	"context"
	"fmt"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// LeaseRules are the permissions a Leasehold candidate or lock needs on
// Leases (delete: a lock waiter removes its queue entry).
func LeaseRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{{
		APIGroups: []string{"coordination.k8s.io"},
		Resources: []string{"leases"},
		Verbs:     []string{"get", "list", "watch", "create", "update", "delete"},
	}}
}

// EnsureNamespace creates the namespace if it does not exist.
func EnsureNamespace(ctx context.Context, cs kubernetes.Interface, ns string) error {
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("testenv: create namespace %s: %w", ns, err)
	}
	return nil
}

// ServiceAccountToken creates (or updates) the ServiceAccount ns/name, a Role
// with rules and a RoleBinding for it, and returns a real bearer token for it
// minted by the TokenRequest API, valid for an hour.
func (c *ControlPlane) ServiceAccountToken(ctx context.Context, ns, name string, rules []rbacv1.PolicyRule) (string, error) {
	cs, err := c.Clientset()
	if err != nil {
		return "", err
	}
	if err := EnsureNamespace(ctx, cs, ns); err != nil {
		return "", err
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("testenv: create serviceaccount %s/%s: %w", ns, name, err)
	}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Rules: rules}
	if err := upsertRole(ctx, cs, role); err != nil {
		return "", err
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: ns}},
	}
	if _, err := cs.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("testenv: create rolebinding %s/%s: %w", ns, name, err)
	}
	expiry := int64(3600)
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("testenv: request token for %s/%s: %w", ns, name, err)
	}
	return tr.Status.Token, nil
}

func upsertRole(ctx context.Context, cs kubernetes.Interface, role *rbacv1.Role) error {
	roles := cs.RbacV1().Roles(role.Namespace)
	_, err := roles.Create(ctx, role, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		cur, gerr := roles.Get(ctx, role.Name, metav1.GetOptions{})
		if gerr != nil {
			return fmt.Errorf("testenv: get role %s/%s: %w", role.Namespace, role.Name, gerr)
		}
		cur.Rules = role.Rules
		_, err = roles.Update(ctx, cur, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("testenv: write role %s/%s: %w", role.Namespace, role.Name, err)
	}
	return nil
}
