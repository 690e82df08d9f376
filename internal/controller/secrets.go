package controller

import (
	"context"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// readSecret reads a Secret uncached with a context whose logger drops
// everything: client-go logs each response body (a Secret's data) at V(9)
// through the logger of the request's context, which is otherwise the
// reconcile's, so a manager run at its highest verbosity would print API
// keys. Every read of a Secret's data goes through here.
func readSecret(ctx context.Context, r client.Reader, key types.NamespacedName, s *corev1.Secret) error {
	return r.Get(logr.NewContext(ctx, logr.Discard()), key, s)
}
