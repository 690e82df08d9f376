package controller

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/emulator"
	"github.com/llmquota/llmquota/internal/ratewindow"
)

// persistedCalls is how many calls the provider's persisted quota state
// charges to the last hour, as a manager restoring it would count them
// (calls still reserved count as spent).
func persistedCalls(name string) int64 {
	var cm corev1.ConfigMap
	Expect(k8sClient.Get(context.Background(), types.NamespacedName{Namespace: stateNamespace, Name: quotaStateName(name)}, &cm)).To(Succeed())
	Expect(cm.BinaryData).To(HaveKey(quotaStateKey))
	now := time.Now()
	l, err := ratewindow.Restore(ratewindow.Config{Windows: []ratewindow.Window{{Name: "hour", Limit: 1 << 20, Period: time.Hour}}}, cm.BinaryData[quotaStateKey], now)
	Expect(err).NotTo(HaveOccurred())
	return l.Stats(now).Windows[0].Used
}

// Issue 13, item 3: on SIGTERM the manager waits for every dispatcher to
// give back the unused part of its reservation before it exits, so a clean
// restart charges the provider exactly the calls sent.
var _ = Describe("A clean shutdown", func() {
	It("gives back the unused quota reservation, at every point of a batch", func() {
		ns := newNamespace()
		emu, url := emulate(emulator.Config{Latency: 100 * time.Millisecond})
		p := providerFor(ns, url, nil) // 600 a minute: blocks of 120 calls are reserved; 2 at a time, ~20 a second
		b := batchOf(ns, "interrupted", p.Name, 100, func(s *llmv1.InferenceBatchSpec) { s.BatchSize = 4 })
		for _, at := range []int32{1, 20, 40, 60, 80} {
			Eventually(func() int32 { return getBatch(b)(Default).Status.Counts.Succeeded }, timeout, 10*time.Millisecond).Should(BeNumerically(">=", at))
			func() {
				stopManager() // what SIGTERM does: the manager's context ends and it returns
				defer func() { stopManager = startManager() }()
				// A call cut off on its way out counts as sent on our side
				// only: at most the 2 in flight.
				sent := int64(len(emu.Log()))
				Expect(persistedCalls(p.Name)).To(And(BeNumerically(">=", sent), BeNumerically("<=", sent+2)),
					"stopped after %d results: the provider is charged other than the %d calls sent (the reservation was not given back?)", at, sent)
			}()
		}
		waitFinished(b, timeout)
	})
})
