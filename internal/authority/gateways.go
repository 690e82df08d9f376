package authority

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/llmquota/llmquota/internal/kubeauth"
)

// OnlyGateways returns an Authorize function that accepts the tokens of the
// named ServiceAccounts ("namespace/name") alone: drawing quota is the
// gateways' right, not every pod's.
func OnlyGateways(r *kubeauth.Reviewer, accounts []string) func(ctx context.Context, token string) error {
	users := make([]string, 0, len(accounts))
	for _, a := range accounts {
		if ns, name, ok := strings.Cut(a, "/"); ok {
			users = append(users, serviceaccount.MakeUsername(ns, name))
		}
	}
	return func(ctx context.Context, token string) error {
		user, err := r.Authenticate(ctx, token)
		if err != nil {
			return err
		}
		if !slices.Contains(users, user.Username) {
			return fmt.Errorf("%s is not a gateway's ServiceAccount (%v)", user.Username, accounts)
		}
		return nil
	}
}

// GatewayPods returns a Server.Gateways function that lists the pods of
// the named ServiceAccounts whose container runs ("namespace/name"), as
// "namespace/name" (CheckinRequest.Pod), read from the API
// server (reader should not be a cache: a new leader must see every pod
// at once, and a field selector needs the server).
func GatewayPods(reader client.Reader, accounts []string) func(ctx context.Context) ([]string, error) {
	return func(ctx context.Context) ([]string, error) {
		var names []string
		for _, a := range accounts {
			ns, name, ok := strings.Cut(a, "/")
			if !ok {
				continue
			}
			var pods corev1.PodList
			if err := reader.List(ctx, &pods, client.InNamespace(ns),
				client.MatchingFieldsSelector{Selector: fields.OneTermEqualSelector("spec.serviceAccountName", name)}); err != nil {
				return nil, fmt.Errorf("listing the pods of ServiceAccount %s: %w", a, err)
			}
			for _, p := range pods.Items {
				if p.Status.Phase == corev1.PodRunning && running(p.Status.ContainerStatuses) {
					names = append(names, p.Namespace+"/"+p.Name)
				}
			}
		}
		return names, nil
	}
}

// running says a container of the pod runs: a gateway whose container
// waits to restart (crash-looping) holds no call, and is not waited for.
func running(statuses []corev1.ContainerStatus) bool {
	return slices.ContainsFunc(statuses, func(s corev1.ContainerStatus) bool { return s.State.Running != nil })
}
