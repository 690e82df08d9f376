package authority

import (
	"context"
	"fmt"
	"slices"

	"github.com/llmquota/llmquota/internal/kubeauth"
)

// OnlyGateways returns an Authorize function that accepts the tokens of the
// named ServiceAccounts ("namespace/name") alone: drawing quota is the
// gateways' right, not every pod's.
func OnlyGateways(r *kubeauth.Reviewer, accounts []string) func(ctx context.Context, token string) error {
	return func(ctx context.Context, token string) error {
		user, err := r.Authenticate(ctx, token)
		if err != nil {
			return err
		}
		ns, name, ok := kubeauth.ServiceAccount(user)
		if !ok || !slices.Contains(accounts, ns+"/"+name) {
			return fmt.Errorf("%s is not a gateway's ServiceAccount (%v)", user.Username, accounts)
		}
		return nil
	}
}
