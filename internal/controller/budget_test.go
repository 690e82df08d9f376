package controller

import (
	"context"
	"math/big"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/emulator"
)

// Issue 13, item 5: hard budgets stop spend before it happens, across a
// restart, with exact decimal arithmetic.
var _ = Describe("Budgets", func() {
	It("send only the calls that fit the daily budget, across a restart, and say which budget holds the batch until when", func() {
		ns := newNamespace()
		emu, url := emulate(emulator.Config{Latency: 50 * time.Millisecond})
		// Each call costs exactly 0.01 USD: five fit a daily budget of 0.05.
		p := providerFor(ns, url, func(s *llmv1.LLMProviderSpec) {
			s.Cost = &llmv1.CostPolicy{PerRequest: "0.01", Budgets: llmv1.CostBudgets{Daily: "0.05", Monthly: "1.00"}}
			s.Limits.MaxConcurrency = 1
		})
		b := batchOf(ns, "frugal", p.Name, 8, nil)
		Eventually(func() int { return len(emu.Log()) }, timeout, 10*time.Millisecond).Should(BeNumerically(">=", 3))
		stopManager()
		func() {
			defer func() { stopManager = startManager() }()
			Expect(len(emu.Log())).To(BeNumerically("<=", 5))
		}()

		tomorrow := time.Now().UTC().Truncate(24 * time.Hour).Add(24 * time.Hour).Format(time.RFC3339)
		Eventually(getBatch(b), timeout, interval).Should(haveCondition(llmv1.ConditionRateLimited, metav1.ConditionTrue, llmv1.ReasonDailyBudgetExhausted))
		Expect(apimeta.FindStatusCondition(getBatch(b)(Default).Status.Conditions, llmv1.ConditionRateLimited).Message).To(ContainSubstring("resets at " + tomorrow))
		Eventually(func(g Gomega) {
			var got llmv1.LLMProvider
			g.Expect(k8sClient.Get(context.Background(), types.NamespacedName{Name: p.Name}, &got)).To(Succeed())
			c := apimeta.FindStatusCondition(got.Status.Conditions, llmv1.ConditionRateLimited)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Reason).To(Equal(llmv1.ReasonDailyBudgetExhausted))
			g.Expect(got.Status.Cost.Committed).NotTo(BeNil())
			committed, ok := new(big.Rat).SetString(string(got.Status.Cost.Committed.Today))
			g.Expect(ok).To(BeTrue())
			g.Expect(committed.Cmp(big.NewRat(5, 100))).To(BeNumerically("<=", 0), "committed %s, past the budget", committed.FloatString(6))
			g.Expect(statusWriters(&got)).To(ConsistOf("llmquota-manager-provider-status/Apply"), "the status has one writer")
		}, timeout, interval).Should(Succeed())
		var cm corev1.ConfigMap
		Expect(k8sClient.Get(context.Background(), types.NamespacedName{Namespace: stateNamespace, Name: "llmquota-cost-" + p.Name}, &cm)).To(Succeed())
		Expect(cm.Data).To(HaveKey(".provider"), "the commitment the dispatcher waits for lives in the manager's state")
		// At most five calls reach the server (0.05 at 0.01 each), whatever the
		// restart cut off; at least three (the budget, not the test, stopped it).
		sentAllItCould(p.Name)
		Expect(len(emu.Log())).To(SatisfyAll(BeNumerically(">=", 3), BeNumerically("<=", 5)),
			"the calls sent cost more than the daily budget of 0.05")
		answered := map[string]bool{}
		for _, r := range emu.Log() {
			if r.Status == 200 {
				answered[r.PromptHash] = true
			}
		}
		// The server logs a 200 as the call arrives: one the stop cut off
		// before its answer came back is charged but has no result.
		Eventually(func() int32 { return getBatch(b)(Default).Status.Counts.Succeeded }, timeout, interval).Should(
			SatisfyAll(BeNumerically("<=", len(answered)), BeNumerically(">=", len(answered)-1)))
	})

	It("hold a namespace at its own budget, across a restart, and let the others go on", func() {
		frugal, other := newNamespace(), newNamespace()
		emu, url := emulate(emulator.Config{Latency: 20 * time.Millisecond})
		// Each call costs exactly 0.01 USD: three fit the frugal namespace's 0.03 a day.
		p := providerFor(frugal, url, func(s *llmv1.LLMProviderSpec) {
			s.Cost = &llmv1.CostPolicy{PerRequest: "0.01"}
			s.Shares = &llmv1.SharePolicy{Namespaces: []llmv1.NamespaceShare{{Namespace: frugal, Budgets: &llmv1.CostBudgets{Daily: "0.03"}}}}
			s.Limits.MaxConcurrency = 1
		})
		waitReady(p)
		held := batchOf(frugal, "frugal", p.Name, 6, nil)
		Eventually(func() int { return len(emu.Log()) }, timeout, 10*time.Millisecond).Should(BeNumerically(">=", 1))
		stopManager()
		stopManager = startManager() // the committed spend is read back from its ConfigMap
		free := batchOf(other, "free", p.Name, 6, nil)
		Expect(waitFinished(free, timeout).Status.Counts.Succeeded).To(BeEquivalentTo(6), "the other namespace goes on")

		tomorrow := time.Now().UTC().Truncate(24 * time.Hour).Add(24 * time.Hour).Format(time.RFC3339)
		Eventually(getBatch(held), timeout, interval).Should(haveCondition(llmv1.ConditionRateLimited, metav1.ConditionTrue, llmv1.ReasonNamespaceDailyBudgetExhausted))
		Expect(apimeta.FindStatusCondition(getBatch(held)(Default).Status.Conditions, llmv1.ConditionRateLimited).Message).
			To(And(ContainSubstring("this namespace's daily budget"), ContainSubstring("resets at "+tomorrow)))
		Eventually(func() []string { return eventReasons(held) }, timeout, interval).Should(ContainElement("Warning/" + llmv1.ReasonNamespaceDailyBudgetExhausted))

		var cm corev1.ConfigMap
		Expect(k8sClient.Get(context.Background(), types.NamespacedName{Namespace: stateNamespace, Name: "llmquota-cost-" + p.Name}, &cm)).To(Succeed())
		Expect(cm.Data).To(HaveKey(frugal))
		Expect(cm.Data).NotTo(HaveKey(other), "a namespace without a budget commits nothing")

		// The other namespace's six, and at most three of the frugal one's,
		// whatever the restart cut off.
		sentAllItCould(p.Name)
		Expect(len(emu.Log())).To(SatisfyAll(BeNumerically(">=", 7), BeNumerically("<=", 9)),
			"the frugal namespace's calls cost more than its daily budget of 0.03")
		Expect(getBatch(held)(Default).Status.Counts.Succeeded).To(BeNumerically("<=", 3))

		By("the provider's status says what each namespace spent, the most first")
		Eventually(func(g Gomega) {
			var got llmv1.LLMProvider
			g.Expect(k8sClient.Get(context.Background(), types.NamespacedName{Name: p.Name}, &got)).To(Succeed())
			g.Expect(got.Status.Cost).NotTo(BeNil())
			spent := got.Status.Cost.Namespaces
			g.Expect(spent).NotTo(BeEmpty())
			g.Expect(spent[0].Namespace).To(Equal(other), "six calls at 0.01 come before at most three")
			g.Expect(string(spent[0].ThisMonth)).To(Equal("0.06"))
			// The frugal namespace's calls came before the restart: they are
			// listed when a status write carried them before it (the list goes
			// on from the last write; the budget, persisted apart, does not).
			if len(spent) > 1 {
				g.Expect(spent[1].Namespace).To(Equal(frugal))
				g.Expect(string(spent[1].ThisMonth)).To(BeElementOf("0.01", "0.02", "0.03"))
			}
			g.Expect(len(spent)).To(BeNumerically("<=", 2))
		}, timeout, interval).Should(Succeed())
	})
})

// Issue 26, item 2: a namespace's own limits under the provider's.
var _ = Describe("Namespace limits", func() {
	It("hold a namespace at its own minute window, name it in the batch's conditions, and let the others go on", func() {
		limited, other := newNamespace(), newNamespace()
		emu, url := emulate(emulator.Config{})
		p := providerFor(limited, url, func(s *llmv1.LLMProviderSpec) {
			s.Shares = &llmv1.SharePolicy{Namespaces: []llmv1.NamespaceShare{{Namespace: limited,
				Limits: &llmv1.ScopeLimits{RequestsPerMinute: ptr.To[int32](3)}}}}
			s.Limits.MaxConcurrency = 4
		})
		waitReady(p)
		held := batchOf(limited, "limited", p.Name, 6, nil)
		free := batchOf(other, "free", p.Name, 6, nil)
		Expect(waitFinished(free, timeout).Status.Counts.Succeeded).To(BeEquivalentTo(6), "the other namespace goes on")
		Eventually(getBatch(held), timeout, interval).Should(haveCondition(llmv1.ConditionRateLimited, metav1.ConditionTrue, llmv1.ReasonNamespaceLimitReached))
		Eventually(getBatch(held), timeout, interval).Should(haveCondition(llmv1.ConditionProgressing, metav1.ConditionFalse, llmv1.ReasonNamespaceLimitReached))
		Expect(apimeta.FindStatusCondition(getBatch(held)(Default).Status.Conditions, llmv1.ConditionRateLimited).Message).
			To(And(ContainSubstring("own minute limit"), ContainSubstring("waits for it to free")))
		// The batch says it is held, so its namespace had its chance: three of
		// its calls, and the other's six, reached the server.
		Eventually(func() int32 { return getBatch(held)(Default).Status.Counts.Succeeded }, timeout, interval).Should(BeEquivalentTo(3))
		Expect(emu.Log()).To(HaveLen(9))
	})
})
