package apiserver

import (
	"context"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ServiceAccountToken creates the ServiceAccount ns/name if it is missing
// and returns a token of it for audiences, valid for an hour: what a
// projected token volume gives a pod.
func ServiceAccountToken(ctx context.Context, c client.Client, ns, name string, audiences ...string) (string, error) {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if err := c.Create(ctx, sa); client.IgnoreAlreadyExists(err) != nil {
		return "", err
	}
	tr := &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{Audiences: audiences, ExpirationSeconds: ptr.To(int64(3600))}}
	if err := c.SubResource("token").Create(ctx, sa, tr); err != nil {
		return "", err
	}
	return tr.Status.Token, nil
}

// GrantUse lets the ServiceAccount ns/sa call the named LLMProviders
// through the gateway (all of them when names is empty), as an admin
// would: a ClusterRole named role with verb use on llmproviders, bound
// cluster-wide since LLMProviders are cluster-scoped. A role granted
// before is bound again, as it is.
func GrantUse(ctx context.Context, c client.Client, role string, names []string, ns, sa string) error {
	err := c.Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: role}, Rules: []rbacv1.PolicyRule{{
		APIGroups: []string{"llmquota.dev"}, Resources: []string{"llmproviders"}, Verbs: []string{"use"}, ResourceNames: names}}})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return c.Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: role + "-" + ns + "-" + sa},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: ns, Name: sa}}})
}
