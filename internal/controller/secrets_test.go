package controller

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/go-logr/logr"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
)

// lockedBuffer is a log sink many goroutines write to.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var _ = Describe("API keys", func() {
	ctx := context.Background()

	// Issue 13, item 4: client-go logs response bodies at V(9) through the
	// logger in the request's context, which is the reconcile's.
	It("never reach the manager's log at its highest verbosity, nor status, events or metrics", func() {
		const canary = "sk-canary-7f3a9c1e5b2d4068"
		ns := newNamespace()
		var logs lockedBuffer
		verbose := zap.New(zap.WriteTo(&logs), zap.Level(zapcore.Level(-127)))
		// The verbose manager instead of the suite's, not beside it: one
		// manager reconciles, as in a cluster.
		stopManager()
		DeferCleanup(func() { stopManager = startManager() })
		DeferCleanup(startManagerWith(ctrl.Options{Logger: verbose})) // stopped first

		By("a read through a verbose context logs its response body: the log would show a leak")
		Expect(k8sClient.Get(logr.NewContext(ctx, verbose), types.NamespacedName{Name: ns}, &corev1.Namespace{})).To(Succeed())
		Expect(logs.String()).To(ContainSubstring(`"msg":"Response Body"`))

		Expect(k8sClient.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "canary"},
			Data: map[string][]byte{"api-key": []byte(canary + "\n")}})).To(Succeed())
		p := hostedProvider(ns, "canary")
		Expect(k8sClient.Create(ctx, p)).To(Succeed())
		DeferCleanup(func() { _ = k8sClient.Delete(ctx, p) })
		Eventually(readyOf(p.Name), timeout, interval).Should(haveReady(metav1.ConditionTrue, llmv1.ReasonConfigured))
		// The verbose manager read the key itself: it started the provider's
		// dispatcher, which reads the Secret.
		Eventually(logs.String, timeout, interval).Should(MatchRegexp(`"msg":"Started dispatcher".*"name":"` + p.Name + `"`))

		Expect(logs.String()).NotTo(ContainSubstring(canary), "the API key is in the log")
		for _, line := range strings.Split(logs.String(), "\n") {
			// Bodies are hex dumps of protobuf, which can split the key
			// across lines: no Secret's body may be logged at all.
			if strings.Contains(line, `"msg":"Response Body"`) {
				Expect(line).NotTo(Or(ContainSubstring("|k8s.....v1..Secr|"), ContainSubstring(`"kind":"Secret"`)), "a Secret's body is in the log")
			}
		}
		var got llmv1.LLMProvider
		Expect(k8sClient.Get(ctx, types.NamespacedName{Name: p.Name}, &got)).To(Succeed())
		Expect(fmt.Sprintf("%+v", got)).NotTo(ContainSubstring(canary))
		var evs eventsv1.EventList
		Expect(k8sClient.List(ctx, &evs)).To(Succeed())
		Expect(fmt.Sprintf("%+v", evs.Items)).NotTo(ContainSubstring(canary))
		families, err := crmetrics.Registry.Gather()
		Expect(err).NotTo(HaveOccurred())
		Expect(strings.Contains(fmt.Sprintf("%v", families), canary)).To(BeFalse(), "the API key is in a metric")
	})
})
