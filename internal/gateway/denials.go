package gateway

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/flowcontrol"

	"github.com/llmquota/llmquota/internal/kubeauth"
)

// ReasonProviderAccessDenied is the reason of the Event a refused caller's
// ServiceAccount gets.
const ReasonProviderAccessDenied = "ProviderAccessDenied"

// The rate of denial Events a gateway replica records, across all callers.
const (
	DeniedEventsPerSecond = 1
	DeniedEventsBurst     = 10
)

// Denials tells refused callers' teams why, as Warning Events on the
// calling ServiceAccount (`kubectl get events -n <team>`), rate-limited so
// that a caller retrying in a loop cannot flood the API server: at most
// burst Events at once and perSecond after, across all callers, on top of
// the recorder's own folding of repeats into one series. A caller whose
// token is not valid names no ServiceAccount and gets no Event. Every
// refusal, with an Event or without, is counted in
// llmquota_gateway_requests_total (codes 401 and 403).
type Denials struct {
	recorder events.EventRecorder
	limiter  flowcontrol.RateLimiter
}

// NewDenials records through recorder at most perSecond Events a second,
// burst at once.
func NewDenials(recorder events.EventRecorder, perSecond float32, burst int) *Denials {
	return &Denials{recorder: recorder, limiter: flowcontrol.NewTokenBucketRateLimiter(perSecond, burst)}
}

// denied records that c was refused use of providerName with f.
func (d *Denials) denied(c caller, providerName string, f *failure) {
	if d == nil {
		return
	}
	ns, name, ok := kubeauth.ServiceAccount(c.user)
	if !ok {
		return
	}
	if !d.limiter.TryAccept() {
		return
	}
	sa := &corev1.ServiceAccount{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(c.user.UID)}}
	d.recorder.Eventf(sa, nil, corev1.EventTypeWarning, ReasonProviderAccessDenied, "Call", "provider %s: %s", providerName, f.message)
}
