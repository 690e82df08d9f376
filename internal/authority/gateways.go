package authority

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apiserver/pkg/authentication/serviceaccount"

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
