package controller

import (
	"context"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	. "github.com/onsi/gomega/gstruct"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/cost"
	"github.com/llmquota/llmquota/internal/emulator"
	"github.com/llmquota/llmquota/internal/metrics"
	"github.com/llmquota/llmquota/internal/results"
)

const emulatorKey = "emulator-key"

// emulate starts a provider emulator for one spec.
func emulate(cfg emulator.Config) (*emulator.Server, string) {
	cfg.Keys = []string{emulatorKey}
	emu := emulator.New(cfg)
	srv := emulator.NewTestServer(emu)
	DeferCleanup(srv.Close)
	return emu, srv.URL
}

// providerFor creates a Gemini provider pointed at the emulator, with its
// key in a Secret of ns; mutate adjusts the spec before creation.
func providerFor(ns, endpoint string, mutate func(*llmv1.LLMProviderSpec)) *llmv1.LLMProvider {
	ctx := context.Background()
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "api-key"}, Data: map[string][]byte{"key": []byte(emulatorKey)}}
	if err := k8sClient.Create(ctx, secret); err != nil {
		Expect(client.IgnoreAlreadyExists(err)).To(Succeed())
	}
	providerSeq++
	p := &llmv1.LLMProvider{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("emu-%s-%d", ns, providerSeq)},
		Spec: llmv1.LLMProviderSpec{NamespaceSelector: &metav1.LabelSelector{},
			Type: llmv1.ProviderGemini, Endpoint: endpoint, Model: "gemini-test",
			CredentialsSecretRef: &llmv1.SecretKeyReference{Namespace: ns, Name: "api-key", Key: "key"},
			Limits:               llmv1.RateLimits{RequestsPerMinute: ptr.To[int32](600), MaxConcurrency: 2},
			Retry:                &llmv1.RetryPolicy{MaxRetries: ptr.To[int32](3), InitialBackoffMilliseconds: ptr.To[int32](20), MaxBackoffMilliseconds: ptr.To[int32](200)},
		},
	}
	if mutate != nil {
		mutate(&p.Spec)
	}
	Expect(k8sClient.Create(ctx, p)).To(Succeed())
	return p
}

// waitReady waits for the provider to be Ready, so that a batch created
// next is admitted at once rather than after a ProviderNotReady wait.
func waitReady(p *llmv1.LLMProvider) {
	Eventually(func() bool {
		var pp llmv1.LLMProvider
		return k8sClient.Get(context.Background(), client.ObjectKeyFromObject(p), &pp) == nil &&
			meta.IsStatusConditionTrue(pp.Status.Conditions, llmv1.ConditionReady)
	}, timeout, interval).Should(BeTrue())
}

func batchOf(ns, name, provider string, n int, mutate func(*llmv1.InferenceBatchSpec)) *llmv1.InferenceBatch {
	b := &llmv1.InferenceBatch{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: llmv1.InferenceBatchSpec{
			ProviderRef: llmv1.ProviderReference{Name: llmv1.LocalObjectName(provider)},
			BatchSize:   5, BatchDelayMilliseconds: ptr.To[int32](50), MinScore: "0.20",
		},
	}
	for i := range n {
		b.Spec.Items = append(b.Spec.Items, llmv1.Item{ID: fmt.Sprintf("item-%03d", i), Prompt: fmt.Sprintf("%s prompt %d", name, i), Score: "0.50"})
	}
	if mutate != nil {
		mutate(&b.Spec)
	}
	Expect(k8sClient.Create(context.Background(), b)).To(Succeed())
	return b
}

func getBatch(b *llmv1.InferenceBatch) func(Gomega) *llmv1.InferenceBatch {
	return func(g Gomega) *llmv1.InferenceBatch {
		var got llmv1.InferenceBatch
		g.Expect(k8sClient.Get(context.Background(), client.ObjectKeyFromObject(b), &got)).To(Succeed())
		return &got
	}
}

// haveCondition matches a batch's condition by status and reason; an empty
// reason matches any.
func haveCondition(typ string, status metav1.ConditionStatus, reason string) OmegaMatcher {
	reasonMatcher := Equal(reason)
	if reason == "" {
		reasonMatcher = Not(BeEmpty())
	}
	return WithTransform(func(b *llmv1.InferenceBatch) *metav1.Condition {
		return meta.FindStatusCondition(b.Status.Conditions, typ)
	}, And(Not(BeNil()), HaveField("Status", status), HaveField("Reason", reasonMatcher)))
}

// waitFinished waits for a batch's terminal outcome, either one.
func waitFinished(b *llmv1.InferenceBatch, within time.Duration) *llmv1.InferenceBatch {
	Eventually(getBatch(b), within, interval).Should(haveCondition(llmv1.ConditionFinished, metav1.ConditionTrue, "")) // any reason
	return getBatch(b)(Default)
}

// storedResults reads a batch's result ConfigMaps, as a user would.
func storedResults(b *llmv1.InferenceBatch) []results.Result {
	var list corev1.ConfigMapList
	Expect(k8sClient.List(context.Background(), &list, client.InNamespace(b.Namespace), client.MatchingLabels{results.LabelBatch: b.Name})).To(Succeed())
	var out []results.Result
	for _, cm := range list.Items {
		out = append(out, results.Parse([]byte(cm.Data[results.DataKey]))...)
	}
	return out
}

// admissionWaits reads llmquota_batch_admission_wait_seconds for a
// provider: its samples and their sum.
func admissionWaits(provider string) (count uint64, sum float64) {
	var m dto.Metric
	Expect(metrics.AdmissionWait.WithLabelValues(provider).(prometheus.Histogram).Write(&m)).To(Succeed())
	return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
}

// eventReasons lists the type/reason of every Event about obj.
func eventReasons(obj client.Object) []string {
	var evs eventsv1.EventList
	Expect(k8sClient.List(context.Background(), &evs)).To(Succeed())
	var out []string
	for _, e := range evs.Items {
		if e.Regarding.Name == obj.GetName() && e.Regarding.Namespace == obj.GetNamespace() {
			out = append(out, e.Type+"/"+e.Reason)
		}
	}
	return out
}

var _ = Describe("InferenceBatch", func() {
	var ns string
	ctx := context.Background()
	BeforeEach(func() { ns = newNamespace() })

	It("runs the original report's example: 136 items, 41 sent in batches of 5, all results stored", func() {
		limits := []emulator.Limit{{Requests: 600, Period: time.Minute}}
		emu, url := emulate(emulator.Config{Limits: limits})
		p := providerFor(ns, url, nil)

		data, err := os.ReadFile(filepath.Join("..", "..", "config", "samples", "llmquota_v1alpha1_inferencebatch.yaml"))
		Expect(err).NotTo(HaveOccurred())
		var b llmv1.InferenceBatch
		Expect(yaml.Unmarshal(data, &b)).To(Succeed())
		b.Namespace, b.Spec.ProviderRef.Name = ns, llmv1.LocalObjectName(p.Name)
		b.Spec.BatchDelayMilliseconds = ptr.To[int32](100)
		waitReady(p) // admitted at once: no Admitted Event expected below
		Expect(k8sClient.Create(ctx, &b)).To(Succeed())

		got := waitFinished(&b, timeout)
		Expect(got.Status.Counts).To(Equal(llmv1.ItemCounts{Total: 136, Filtered: 95, Succeeded: 41}))
		Expect(got.Status.Progress).To(Equal("136/136"), "filtered items have a stored result: the finished batch reads N/N")
		Expect(got.Status.Batches).To(Equal(llmv1.BatchCounts{Done: 9, Total: 9}))
		Expect(got.Status.StartTime).NotTo(BeNil())
		Expect(got.Status.CompletionTime).NotTo(BeNil())
		Expect(got).To(haveCondition(llmv1.ConditionComplete, metav1.ConditionTrue, llmv1.ReasonSucceeded))
		Expect(got).To(haveCondition(llmv1.ConditionFinished, metav1.ConditionTrue, llmv1.ReasonSucceeded))
		Expect(got).To(haveCondition(llmv1.ConditionProgressing, metav1.ConditionFalse, llmv1.ReasonSucceeded))
		Expect(got).To(haveCondition(llmv1.ConditionFailed, metav1.ConditionFalse, llmv1.ReasonNoFailure))
		Expect(got.Status.EstimatedCompletionTime).To(BeNil())
		// Events are sent in order: once the finish's is there, an Event of
		// the admission would be too. Admitted at once, it has none.
		Eventually(func() []string { return eventReasons(&b) }, timeout, interval).Should(ContainElement("Normal/" + llmv1.ReasonSucceeded))
		Expect(eventReasons(&b)).NotTo(ContainElement("Normal/"+llmv1.ReasonAdmitted), "an admission at once is told by the condition alone")

		stored := storedResults(&b)
		Expect(stored).To(HaveLen(136), "every item, filtered ones included, has one stored result")
		byStatus := map[string]int{}
		for _, r := range stored {
			byStatus[r.Status]++
			if r.Status == results.Succeeded {
				Expect(r.Output).To(HavePrefix("emulated answer"))
				Expect(r.TokensIn).To(BeNumerically(">", 0))
				Expect(r.Provider).To(Equal(p.Name))
			}
		}
		Expect(byStatus).To(Equal(map[string]int{results.Succeeded: 41, results.Filtered: 95}))
		Expect(got.Status.Results).NotTo(BeEmpty())

		log := emu.Log()
		Expect(log).To(HaveLen(41), "only the 41 kept items were sent, each once")
		Expect(emulator.CheckWindows(log, limits)).To(Succeed())

		By("showing usage and cost on the provider")
		Eventually(func(g Gomega) {
			var pp llmv1.LLMProvider
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(p), &pp)).To(Succeed())
			g.Expect(pp.Status.Usage.Minute).NotTo(BeNil())
			g.Expect(pp.Status.Usage.Minute.Limit).To(BeEquivalentTo(600))
			g.Expect(pp.Status.Cost).NotTo(BeNil())
		}, timeout, interval).Should(Succeed())

		By("keeping the quota state in a ConfigMap of the manager's namespace, owned by the provider")
		var state corev1.ConfigMap
		Eventually(func() error {
			return k8sClient.Get(ctx, types.NamespacedName{Namespace: stateNamespace, Name: quotaStateName(p.Name)}, &state)
		}, timeout, interval).Should(Succeed())
		Expect(state.BinaryData[quotaStateKey]).NotTo(BeEmpty())
		Expect(state.OwnerReferences).To(ConsistOf(HaveField("UID", p.UID)))
	})

	It("ends every item succeeded or failed with a reason under injected faults, within its retries", func() {
		emu, url := emulate(emulator.Config{Seed: 11, RetryAfter: time.Second,
			Faults: emulator.FaultRates{RateLimit: 0.3, ServerError: 0.1, Reset: 0.05, Hang: 0.03}, HangFor: 3 * time.Second})
		// One call at a time, so the server's log orders the 429 before the next request.
		p := providerFor(ns, url, func(s *llmv1.LLMProviderSpec) { s.Limits.MaxConcurrency = 1 })
		b := batchOf(ns, "faulty", p.Name, 20, func(s *llmv1.InferenceBatchSpec) { s.BatchSize = 20 })
		got := waitFinished(b, 2*timeout)
		Expect(got.Status.Counts.Succeeded + got.Status.Counts.Failed).To(BeEquivalentTo(20))
		Expect(got.Status.Progress).To(Equal("20/20"))
		if got.Status.Counts.Failed > 0 { // a batch with failed items failed, as a Job with failed indexes does
			Expect(got).To(haveCondition(llmv1.ConditionFailed, metav1.ConditionTrue, llmv1.ReasonItemsFailed))
			Expect(got).To(haveCondition(llmv1.ConditionComplete, metav1.ConditionFalse, llmv1.ReasonItemsFailed))
		} else {
			Expect(got).To(haveCondition(llmv1.ConditionComplete, metav1.ConditionTrue, llmv1.ReasonSucceeded))
		}
		told := 0 // 429s, each with a Retry-After: they spend no retry
		for _, rec := range emu.Log() {
			if rec.Status == 429 {
				told++
			}
		}
		for _, r := range storedResults(b) {
			Expect(r.Attempts).To(BeNumerically("<=", 4+told), "attempts past maxRetries+1 and the 429s that said when to come back")
			if r.Status == results.Failed {
				Expect(r.ErrorClass).NotTo(BeEmpty())
				Expect(r.ErrorClass).NotTo(Equal("RateLimited"), "every 429 said when to come back")
				Expect(r.Error).NotTo(BeEmpty())
			}
		}
		log := emu.Log()
		for i, rec := range log {
			if rec.Status != 429 || i+1 == len(log) {
				continue
			}
			Expect(log[i+1].Time).NotTo(BeTemporally("<", rec.Time.Add(time.Second)), "a request was sent during a Retry-After hold")
		}
	})

	It("shares one provider fairly between two namespaces", func() {
		// 50ms a call, one at a time: the big batch alone takes 3s.
		_, url := emulate(emulator.Config{Latency: 50 * time.Millisecond})
		p := providerFor(ns, url, func(s *llmv1.LLMProviderSpec) { s.Limits.MaxConcurrency = 1 })
		big := batchOf(ns, "big", p.Name, 60, func(s *llmv1.InferenceBatchSpec) { s.BatchSize = 60; s.Suspend = true })
		other := newNamespace()
		small := batchOf(other, "small", p.Name, 6, func(s *llmv1.InferenceBatchSpec) { s.BatchSize = 6; s.Suspend = true })
		By("admitting both, then letting the big one start first")
		for _, b := range []*llmv1.InferenceBatch{big, small} {
			Eventually(getBatch(b), timeout, interval).Should(haveCondition(llmv1.ConditionAdmitted, metav1.ConditionTrue, "Admitted"))
		}
		for _, b := range []*llmv1.InferenceBatch{big, small} {
			got := getBatch(b)(Default)
			got.Spec.Suspend = false
			Expect(k8sClient.Update(ctx, got)).To(Succeed())
		}
		waitFinished(small, timeout)
		Expect(getBatch(big)(Default).Status.Counts.Succeeded).To(BeNumerically("<", 50), "the small namespace finished only after the big one")
		waitFinished(big, timeout)
	})

	It("loses no result across manager restarts and never exceeds a window it fills", func() {
		// 20 a minute at the provider and in the spec: the 30 items fill the
		// window, and the manager restarts while it is full, so a manager
		// that forgot what the one before it sent (or had reserved) would
		// send past it, and the emulator's log would show it.
		limits := []emulator.Limit{{Requests: 20, Period: time.Minute}}
		emu, url := emulate(emulator.Config{Limits: limits, Latency: 20 * time.Millisecond})
		p := providerFor(ns, url, func(s *llmv1.LLMProviderSpec) { s.Limits.RequestsPerMinute = ptr.To[int32](20) })
		b := batchOf(ns, "restarted", p.Name, 30, func(s *llmv1.InferenceBatchSpec) { s.BatchSize = 4 })
		for _, at := range []int32{8, 14} {
			Eventually(func() int32 { return getBatch(b)(Default).Status.Counts.Succeeded }, timeout, 10*time.Millisecond).Should(BeNumerically(">=", at))
			stopManager()
			stopManager = startManager()
		}
		By("restarting once more while the minute window is full")
		Eventually(getBatch(b), timeout, interval).Should(haveCondition(llmv1.ConditionRateLimited, metav1.ConditionTrue, llmv1.ReasonMinuteWindowFull))
		stopManager()
		stopManager = startManager()
		got := waitFinished(b, 3*time.Minute)
		Expect(got.Status.Counts.Succeeded).To(BeEquivalentTo(30))
		ids := map[string]int{}
		for _, r := range storedResults(b) {
			ids[r.ID]++
		}
		Expect(ids).To(HaveLen(30))
		for id, n := range ids {
			Expect(n).To(Equal(1), "item %s stored %d times", id, n)
		}
		log := emu.Log()
		Expect(len(log)).To(BeNumerically("<=", 30+3*2*2), "re-sent more than the calls in flight (2 per restart, plus the results being written)")
		Expect(len(log)).To(BeNumerically(">", 20), "the window was filled")
		Expect(emulator.CheckWindows(log, limits)).To(Succeed())
		Expect(emulator.Count(log).QuotaRefusals).To(BeZero(), "the emulator refused calls for its quota")
	})

	It("hands a running batch over to a standby manager on leader failover", func() {
		limits := []emulator.Limit{{Requests: 600, Period: time.Minute}}
		emu, url := emulate(emulator.Config{Limits: limits, Latency: 20 * time.Millisecond})
		p := providerFor(ns, url, nil)
		By("replacing the suite's manager with two that elect a leader")
		stopManager()
		stopLeader := startElectedManager()
		b := batchOf(ns, "failover", p.Name, 30, func(s *llmv1.InferenceBatchSpec) { s.BatchSize = 3 })
		Eventually(func() int32 { return getBatch(b)(Default).Status.Counts.Succeeded }, timeout, 10*time.Millisecond).Should(BeNumerically(">=", 6))
		stopStandby := startElectedManager()
		By("stopping the leader: the standby takes the lease and finishes the batch")
		stopLeader()
		got := waitFinished(b, timeout)
		stopStandby()
		stopManager = startManager()

		Expect(got.Status.Counts.Succeeded).To(BeEquivalentTo(30))
		Expect(storedResults(b)).To(HaveLen(30))
		Expect(len(emu.Log())).To(BeNumerically("<=", 30+2*2), "re-sent more than the calls in flight at the failover")
		Expect(emulator.CheckWindows(emu.Log(), limits)).To(Succeed())
	})

	It("says why a batch does not move while the minute window is full, and when it will finish", func() {
		_, url := emulate(emulator.Config{})
		p := providerFor(ns, url, func(s *llmv1.LLMProviderSpec) { s.Limits.RequestsPerMinute = ptr.To[int32](3) })
		b := batchOf(ns, "held", p.Name, 5, func(s *llmv1.InferenceBatchSpec) { s.BatchSize = 5 })
		Eventually(getBatch(b), timeout, interval).Should(SatisfyAll(
			haveCondition(llmv1.ConditionRateLimited, metav1.ConditionTrue, llmv1.ReasonMinuteWindowFull),
			haveCondition(llmv1.ConditionProgressing, metav1.ConditionFalse, llmv1.ReasonMinuteWindowFull),
			HaveField("Status.Progress", "3/5")))
		got := getBatch(b)(Default)
		Expect(got.Status.EstimatedCompletionTime).NotTo(BeNil())
		Expect(got.Status.EstimatedCompletionTime.Time).To(BeTemporally(">", time.Now()), "the ETA of a held batch is ahead")
		Expect(got).To(haveCondition(llmv1.ConditionFinished, metav1.ConditionFalse, llmv1.ReasonNotFinished))
		Expect(k8sClient.Delete(ctx, b)).To(Succeed()) // not worth a minute of the suite
	})

	It("suspends and resumes", func() {
		emu, url := emulate(emulator.Config{})
		p := providerFor(ns, url, nil)
		b := batchOf(ns, "paused", p.Name, 5, func(s *llmv1.InferenceBatchSpec) { s.Suspend = true })
		Eventually(getBatch(b), timeout, interval).Should(haveCondition(llmv1.ConditionSuspended, metav1.ConditionTrue, llmv1.ReasonSuspended))
		sentAllItCould(p.Name)
		Expect(emu.Log()).To(BeEmpty(), "a suspended batch sent")
		Expect(getBatch(b)(Default)).To(haveCondition(llmv1.ConditionProgressing, metav1.ConditionFalse, "Suspended"))

		got := getBatch(b)(Default)
		got.Spec.Suspend = false
		Expect(k8sClient.Update(ctx, got)).To(Succeed())
		waitFinished(b, timeout)
		Expect(emu.Log()).To(HaveLen(5))
	})

	It("stops sending when a batch is deleted mid-run", func() {
		emu, url := emulate(emulator.Config{Latency: 20 * time.Millisecond})
		p := providerFor(ns, url, func(s *llmv1.LLMProviderSpec) { s.Limits.MaxConcurrency = 1 }) // ~10 calls a second
		b := batchOf(ns, "doomed", p.Name, 100, func(s *llmv1.InferenceBatchSpec) { s.BatchSize = 100 })
		Eventually(func() int { return len(emu.Log()) }, timeout, interval).Should(BeNumerically(">=", 3))
		Expect(k8sClient.Delete(ctx, b)).To(Succeed())
		By("the manager takes the batch out of its provider's dispatcher, which sends nothing more")
		key := client.ObjectKeyFromObject(b).String()
		Eventually(func() bool { return suiteRegistry.Load().Get(p.Name).Has(key) }, timeout, interval).Should(BeFalse())
		sentAllItCould(p.Name)
		stopped := len(emu.Log())
		Expect(stopped).To(BeNumerically("<", 100), "the batch ran to the end although it was deleted")
		sentAllItCould(p.Name)
		Expect(emu.Log()).To(HaveLen(stopped), "sent after the batch was deleted")
	})

	It("fails with DeadlineExceeded and keeps the results so far", func() {
		_, url := emulate(emulator.Config{})
		p := providerFor(ns, url, func(s *llmv1.LLMProviderSpec) {
			s.Limits.MinIntervalMilliseconds = ptr.To[int32](400)
		})
		b := batchOf(ns, "late", p.Name, 50, func(s *llmv1.InferenceBatchSpec) {
			s.ActiveDeadlineSeconds = ptr.To[int64](2)
			s.BatchSize = 50
		})
		Eventually(getBatch(b), timeout, interval).Should(haveCondition(llmv1.ConditionFailed, metav1.ConditionTrue, llmv1.ReasonDeadlineExceeded))
		got := getBatch(b)(Default)
		Expect(got.Status.Counts.Succeeded).To(BeNumerically(">", 0))
		Expect(got.Status.Counts.Succeeded).To(BeNumerically("<", 50))
		Expect(storedResults(b)).To(HaveLen(int(got.Status.Counts.Succeeded)))
		Expect(got).To(haveCondition(llmv1.ConditionComplete, metav1.ConditionFalse, llmv1.ReasonDeadlineExceeded))
		Expect(got).To(haveCondition(llmv1.ConditionFinished, metav1.ConditionTrue, llmv1.ReasonDeadlineExceeded))
	})

	It("reuses stored results for identical prompts when the cache is enabled", func() {
		emu, url := emulate(emulator.Config{})
		p := providerFor(ns, url, nil)
		first := batchOf(ns, "first", p.Name, 6, nil)
		waitFinished(first, timeout)
		second := batchOf(ns, "second", p.Name, 6, func(s *llmv1.InferenceBatchSpec) {
			s.Cache = llmv1.CacheEnabled
			for i := range s.Items {
				s.Items[i].Prompt = strings.Replace(s.Items[i].Prompt, "second", "first", 1)
			}
		})
		got := waitFinished(second, timeout)
		Expect(got.Status.Counts.Cached).To(BeEquivalentTo(6))
		Expect(emu.Log()).To(HaveLen(6), "the second batch made no provider call")
		for _, r := range storedResults(second) {
			Expect(r.Status).To(Equal(results.Cached))
			Expect(r.Output).To(HavePrefix("emulated answer"))
		}
	})

	It("sends items to the fallback while the primary is down", func() {
		_, url := emulate(emulator.Config{})
		backup := providerFor(ns, url, nil)
		primary := providerFor(ns, "http://127.0.0.1:1", func(s *llmv1.LLMProviderSpec) {
			s.Fallback = &llmv1.ProviderReference{Name: llmv1.LocalObjectName(backup.Name)}
			s.Limits.MaxConcurrency = 1
		})
		b := batchOf(ns, "rerouted", primary.Name, 10, func(s *llmv1.InferenceBatchSpec) { s.BatchSize = 10 })
		got := waitFinished(b, timeout)
		served := map[string]int{}
		for _, r := range storedResults(b) {
			if r.Status == results.Succeeded {
				served[r.Provider]++
			}
		}
		Expect(served[backup.Name]).To(BeNumerically(">=", 8), "the fallback served the items once the circuit opened")
		Expect(got.Status.Counts.Succeeded + got.Status.Counts.Failed).To(BeEquivalentTo(10))
		Eventually(func(g Gomega) {
			var pp llmv1.LLMProvider
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(primary), &pp)).To(Succeed())
			g.Expect(meta.FindStatusCondition(pp.Status.Conditions, llmv1.ConditionDegraded)).To(HaveField("Status", metav1.ConditionTrue))
		}, timeout, interval).Should(Succeed())
	})

	It("raises CostAlert with a Warning Event when the daily threshold is crossed", func() {
		_, url := emulate(emulator.Config{})
		p := providerFor(ns, url, func(s *llmv1.LLMProviderSpec) {
			s.Cost = &llmv1.CostPolicy{PerRequest: "0.01", Alerts: llmv1.CostAlerts{Daily: "0.05", Monthly: "100"}}
		})
		waitFinished(batchOf(ns, "spendy", p.Name, 8, nil), timeout)
		Eventually(func(g Gomega) {
			var pp llmv1.LLMProvider
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(p), &pp)).To(Succeed())
			c := meta.FindStatusCondition(pp.Status.Conditions, llmv1.ConditionCostAlert)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Status).To(Equal(metav1.ConditionTrue))
			g.Expect(c.Reason).To(Equal(llmv1.ReasonDailyThresholdExceeded))
			g.Expect(pp.Status.Cost.Today).To(BeEquivalentTo("0.08"))
			g.Expect(eventReasons(&pp)).To(ContainElement("Warning/" + llmv1.ReasonDailyThresholdExceeded))
		}, timeout, interval).Should(Succeed())
	})

	It("reports bad JSONL with its line number and recovers when the ConfigMap is fixed", func() {
		_, url := emulate(emulator.Config{})
		p := providerFor(ns, url, nil)
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "news"},
			Data: map[string]string{"items.jsonl": "{\"id\":\"a\",\"prompt\":\"p\",\"score\":0.5}\n{\"id\":\"b\",\"prompt\":\n"}}
		Expect(k8sClient.Create(ctx, cm)).To(Succeed())
		b := &llmv1.InferenceBatch{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "from-cm"}, Spec: llmv1.InferenceBatchSpec{
			ProviderRef: llmv1.ProviderReference{Name: llmv1.LocalObjectName(p.Name)},
			ItemsFrom:   &llmv1.ItemsSource{ConfigMapKeyRef: &llmv1.ConfigMapKeyReference{Name: "news", Key: "items.jsonl"}},
		}}
		Expect(k8sClient.Create(ctx, b)).To(Succeed())
		Eventually(getBatch(b), timeout, interval).Should(haveCondition(llmv1.ConditionAdmitted, metav1.ConditionFalse, llmv1.ReasonInvalidItems))
		Expect(meta.FindStatusCondition(getBatch(b)(Default).Status.Conditions, llmv1.ConditionAdmitted).Message).To(ContainSubstring("line 2"))

		cm.Data["items.jsonl"] = "{\"id\":\"a\",\"prompt\":\"p\",\"score\":0.5}\n{\"id\":\"b\",\"prompt\":\"q\",\"score\":0.1}\n"
		Expect(k8sClient.Update(ctx, cm)).To(Succeed())
		got := waitFinished(b, timeout)
		Expect(got.Status.Counts).To(Equal(llmv1.ItemCounts{Total: 2, Filtered: 1, Succeeded: 1}))
	})

	It("waits for a missing provider, then runs", func() {
		_, url := emulate(emulator.Config{})
		b := batchOf(ns, "early", "not-yet-"+ns, 3, nil)
		Eventually(getBatch(b), timeout, interval).Should(haveCondition(llmv1.ConditionAdmitted, metav1.ConditionFalse, llmv1.ReasonProviderNotFound))
		Eventually(func() []string { return eventReasons(b) }, timeout, interval).Should(ContainElement("Warning/" + llmv1.ReasonProviderNotFound))
		Expect(getBatch(b)(Default)).To(SatisfyAll(
			haveCondition(llmv1.ConditionFailed, metav1.ConditionFalse, llmv1.ReasonNoFailure), // waiting is not failing
			haveCondition(llmv1.ConditionProgressing, metav1.ConditionFalse, llmv1.ReasonProviderNotFound)))
		p := providerFor(ns, url, nil)
		p2 := p.DeepCopy()
		p2.ObjectMeta = metav1.ObjectMeta{Name: "not-yet-" + ns}
		Expect(k8sClient.Create(ctx, p2)).To(Succeed())
		got := waitFinished(b, timeout)
		Eventually(func() []string { return eventReasons(b) }, timeout, interval).Should(ContainElement("Normal/"+llmv1.ReasonAdmitted),
			"an admission that ends a wait has its Event")

		By("counting the wait in llmquota_batch_admission_wait_seconds, once per batch")
		count, sum := admissionWaits(p2.Name)
		Expect(count).To(BeEquivalentTo(1))
		// The API server shows both timestamps in whole seconds; the metric's start
		// has all its digits, so it lies in [shown, shown+1).
		shown := got.Status.StartTime.Sub(got.CreationTimestamp.Time).Seconds()
		Expect(sum).To(SatisfyAll(BeNumerically(">=", shown), BeNumerically("<", shown+1)))
		waitFinished(batchOf(ns, "prompt", p2.Name, 3, nil), timeout)
		count, _ = admissionWaits(p2.Name)
		Expect(count).To(BeEquivalentTo(2), "one sample per admitted batch, none for its progress or completion writes")
	})

	It("writes status without the items, keeps the spec whole and never writes over a newer copy", func() {
		_, url := emulate(emulator.Config{})
		p := providerFor(ns, url, nil)
		waitReady(p)
		b := batchOf(ns, "whole", p.Name, 12, nil)
		done := waitFinished(b, timeout)
		Expect(done.Status.Counts.Succeeded).To(BeEquivalentTo(12))
		Expect(done.Spec.Items).To(Equal(b.Spec.Items), "the server keeps the spec of a status write")
		Expect(done.Generation).To(BeEquivalentTo(1))
		var creator, status string
		for _, m := range done.ManagedFields {
			if m.Subresource == "status" {
				status = m.FieldsV1.GetRawString()
			} else {
				creator = m.FieldsV1.GetRawString()
			}
		}
		Expect(status).To(SatisfyAll(ContainSubstring(`"f:counts"`), Not(ContainSubstring(`"f:spec"`))))
		Expect(creator).To(ContainSubstring(`"f:items"`), "the items stay their creator's")

		By("refusing a status computed from a copy older than the stored batch")
		stale := done.DeepCopy()
		labelled := done.DeepCopy()
		labelled.Labels = map[string]string{"team": "research"}
		Expect(k8sClient.Update(ctx, labelled)).To(Succeed())
		stale.Status.Counts.Failed = 7
		err := (&InferenceBatchReconciler{Client: k8sClient}).writeStatus(ctx, stale)
		Expect(apierrors.IsConflict(err)).To(BeTrue(), "got %v", err)
		Expect(getBatch(b)(Default).Status.Counts.Failed).To(BeZero())
	})

	It("shows a batch admitted when the status write of its admission met a Conflict", func() {
		_, url := emulate(emulator.Config{})
		p := providerFor(ns, url, nil)
		waitReady(p)
		b := &llmv1.InferenceBatch{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "conflicted", Labels: map[string]string{conflictFirstStatusWrite: "yes"}},
			Spec: llmv1.InferenceBatchSpec{ProviderRef: llmv1.ProviderReference{Name: llmv1.LocalObjectName(p.Name)}, BatchSize: 5, MinScore: "0.20",
				Items: []llmv1.Item{{ID: "a", Prompt: "first", Score: "0.50"}, {ID: "b", Prompt: "second", Score: "0.50"}}},
		}
		Expect(k8sClient.Create(ctx, b)).To(Succeed())
		got := waitFinished(b, timeout)
		_, refused := conflicted.Load(client.ObjectKeyFromObject(b))
		Expect(refused).To(BeTrue(), "the suite's client refused the admission's status write")
		Expect(got.Status.StartTime).NotTo(BeNil())
		Expect(got).To(SatisfyAll(
			haveCondition(llmv1.ConditionAdmitted, metav1.ConditionTrue, llmv1.ReasonAdmitted),
			haveCondition(llmv1.ConditionFinished, metav1.ConditionTrue, llmv1.ReasonSucceeded)))
		Expect(got.Status.Counts.Succeeded).To(BeEquivalentTo(2))
	})

	It("refuses a batch with no model anywhere at admission, sends nothing, and runs once one is named", func() {
		emu, url := emulate(emulator.Config{})
		p := providerFor(ns, url, func(s *llmv1.LLMProviderSpec) { s.Model = "" })
		b := batchOf(ns, "modelless", p.Name, 3, nil)
		Eventually(getBatch(b), timeout, interval).Should(haveCondition(llmv1.ConditionAdmitted, metav1.ConditionFalse, llmv1.ReasonNoModel))
		Eventually(func() []string { return eventReasons(b) }, timeout, interval).Should(ContainElement("Warning/" + llmv1.ReasonNoModel))
		Expect(emu.Log()).To(BeEmpty(), "a call was sent without a model")
		Expect(k8sClient.Patch(ctx, b, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"model":"gemini-test"}}`)))).To(Succeed())
		waitFinished(b, timeout)
	})

	It("admits a batch only from a namespace its provider's namespaceSelector selects", func() {
		emu, url := emulate(emulator.Config{})
		p := providerFor(ns, url, func(s *llmv1.LLMProviderSpec) { s.NamespaceSelector = nil })
		b := batchOf(ns, "unselected", p.Name, 3, nil)
		Eventually(getBatch(b), timeout, interval).Should(haveCondition(llmv1.ConditionAdmitted, metav1.ConditionFalse, llmv1.ReasonNamespaceNotSelected))
		Expect(meta.FindStatusCondition(getBatch(b)(Default).Status.Conditions, llmv1.ConditionAdmitted).Message).To(ContainSubstring("unset, which selects no namespace"))
		Eventually(func() []string { return eventReasons(b) }, timeout, interval).Should(ContainElement("Warning/" + llmv1.ReasonNamespaceNotSelected))

		By("a selector that does not match the namespace's labels")
		Expect(k8sClient.Patch(ctx, p, client.RawPatch(types.MergePatchType,
			[]byte(`{"spec":{"namespaceSelector":{"matchLabels":{"team":"gold"}}}}`)))).To(Succeed())
		Eventually(func() string {
			return meta.FindStatusCondition(getBatch(b)(Default).Status.Conditions, llmv1.ConditionAdmitted).Message
		}, timeout, interval).Should(ContainSubstring("team=gold"))
		Expect(emu.Log()).To(BeEmpty(), "a call was sent for a namespace the provider does not select")

		By("labelling the namespace: the namespace watch admits the batch")
		var n corev1.Namespace
		Expect(k8sClient.Get(ctx, types.NamespacedName{Name: ns}, &n)).To(Succeed())
		Expect(k8sClient.Patch(ctx, &n, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"team":"gold"}}}`)))).To(Succeed())
		waitFinished(b, timeout)
		Expect(emu.Log()).NotTo(BeEmpty())
	})

	It("holds a batch whose priority class does not exist, then orders it by the class's value", func() {
		emu, url := emulate(emulator.Config{})
		p := providerFor(ns, url, func(s *llmv1.LLMProviderSpec) {
			s.Limits.MinIntervalMilliseconds, s.Limits.MaxConcurrency = ptr.To[int32](200), 1
		})
		waitReady(p)
		routine, urgent := "routine-"+ns, "urgent-"+ns
		Expect(k8sClient.Create(ctx, &llmv1.InferencePriorityClass{ObjectMeta: metav1.ObjectMeta{Name: routine}, Value: ptr.To[int32](0)})).To(Succeed())
		one := func(class, model string) func(*llmv1.InferenceBatchSpec) {
			return func(s *llmv1.InferenceBatchSpec) {
				s.PriorityClassName, s.Model, s.BatchSize, s.BatchDelayMilliseconds = llmv1.LocalObjectName(class), model, 1, ptr.To[int32](0)
			}
		}
		low := batchOf(ns, "routine", p.Name, 20, one(routine, "gemini-routine"))
		high := batchOf(ns, "urgent", p.Name, 3, one(urgent, "gemini-urgent"))
		Eventually(getBatch(high), timeout, interval).Should(haveCondition(llmv1.ConditionAdmitted, metav1.ConditionFalse, llmv1.ReasonPriorityClassNotFound))
		Expect(meta.FindStatusCondition(getBatch(high)(Default).Status.Conditions, llmv1.ConditionAdmitted).Message).To(ContainSubstring(urgent))
		Eventually(func() int { return len(emu.Log()) }, timeout, interval).Should(BeNumerically(">=", 2), "the routine batch runs meanwhile")

		By("the class appears: the batch is admitted and its calls go before the routine batch's")
		Expect(k8sClient.Create(ctx, &llmv1.InferencePriorityClass{ObjectMeta: metav1.ObjectMeta{Name: urgent}, Value: ptr.To[int32](100)})).To(Succeed())
		waitFinished(high, timeout)
		waitFinished(low, timeout)
		var models []string
		for _, rec := range emu.Log() {
			models = append(models, rec.Model)
		}
		first := slices.Index(models, "gemini-urgent")
		Expect(first).To(BeNumerically(">", 0))
		Expect(models[first:first+3]).To(HaveEach("gemini-urgent"), "a routine call went between urgent ones: %v", models)
		Expect(models).To(HaveLen(23))
	})

	It("records the model, finish and cost of each answer, and counts answers cut at maxTokens apart", func() {
		_, url := emulate(emulator.Config{})
		p := providerFor(ns, url, func(s *llmv1.LLMProviderSpec) {
			s.Cost = &llmv1.CostPolicy{InputPerMillionTokens: "1.00", OutputPerMillionTokens: "10.00"}
		})
		kept := batchOf(ns, "clipped", p.Name, 4, func(s *llmv1.InferenceBatchSpec) { s.MaxTokens = ptr.To[int32](1) })
		strict := batchOf(ns, "strict", p.Name, 4, func(s *llmv1.InferenceBatchSpec) {
			s.MaxTokens, s.TreatTruncatedAs = ptr.To[int32](1), "Failed"
		})
		got := waitFinished(kept, timeout)
		Expect(got.Status.Counts.Succeeded).To(BeEquivalentTo(4))
		// Each answer: its input at 1.00 and one token at 10.00 per million.
		var sum int64
		for _, r := range storedResults(kept) {
			sum += r.TokensIn
		}
		Expect(got.Status.Usage).To(Equal(&llmv1.BatchUsage{TokensIn: sum, TokensOut: 4,
			CostUSD: llmv1.Decimal(cost.Format(new(big.Rat).SetFrac64(sum+40, 1_000_000)))}))
		Expect(got.Status.Counts.Truncated).To(BeEquivalentTo(4), "every answer was cut at one token")
		for _, r := range storedResults(kept) {
			Expect(r).To(MatchFields(IgnoreExtras, Fields{"Model": Equal("gemini-test"), "FinishReason": Equal("length"),
				"TokensOut": BeEquivalentTo(1), "CostUSD": Not(BeEmpty())}))
		}
		failed := waitFinished(strict, timeout)
		Expect(failed.Status.Counts.Failed).To(BeEquivalentTo(4))
		Expect(meta.FindStatusCondition(failed.Status.Conditions, llmv1.ConditionFailed).Reason).To(Equal(llmv1.ReasonItemsFailed))
		for _, r := range storedResults(strict) {
			Expect(r.ErrorClass).To(Equal("Truncated"))
		}
	})

	It("fails a batch whose every call is refused, turns the provider not Ready, and runs new work once the key is fixed", func() {
		_, url := emulate(emulator.Config{})
		p := providerFor(ns, url, func(s *llmv1.LLMProviderSpec) {
			s.CredentialsSecretRef.Name = "wrong-key"
			s.Limits.RequestsPerHour = ptr.To[int32](1000)
		})
		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "wrong-key"}, Data: map[string][]byte{"key": []byte("not-the-key")}}
		Expect(k8sClient.Create(ctx, secret)).To(Succeed())
		refused := batchOf(ns, "refused", p.Name, 3, nil)
		got := waitFinished(refused, timeout)
		Expect(got).To(SatisfyAll(
			haveCondition(llmv1.ConditionFailed, metav1.ConditionTrue, llmv1.ReasonItemsFailed),
			haveCondition(llmv1.ConditionComplete, metav1.ConditionFalse, llmv1.ReasonItemsFailed),
			haveCondition(llmv1.ConditionProgressing, metav1.ConditionFalse, llmv1.ReasonItemsFailed)))
		Expect(got.Status.Progress).To(Equal("3/3"))
		Expect(got.Status.Counts.Failed).To(BeEquivalentTo(3))
		Eventually(func() []string { return eventReasons(refused) }, timeout, interval).Should(ContainElement("Warning/" + llmv1.ReasonItemsFailed))

		By("the provider reads Ready=False AuthFailed, with windows it does not limit shown as unlimited")
		Eventually(func(g Gomega) {
			var pp llmv1.LLMProvider
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(p), &pp)).To(Succeed())
			g.Expect(meta.FindStatusCondition(pp.Status.Conditions, llmv1.ConditionReady)).To(PointTo(And(
				HaveField("Status", metav1.ConditionFalse), HaveField("Reason", llmv1.ReasonAuthFailed))))
			g.Expect(pp.Status.Usage.Hour).To(PointTo(HaveField("Summary", HaveSuffix("/1000"))))
			g.Expect(pp.Status.Usage.Day).To(PointTo(HaveField("Summary", llmv1.UnlimitedSummary)))
		}, timeout, interval).Should(Succeed())

		By("a new batch waits instead of failing, and runs once the key is right")
		next := batchOf(ns, "after-fix", p.Name, 3, nil)
		Eventually(getBatch(next), timeout, interval).Should(haveCondition(llmv1.ConditionAdmitted, metav1.ConditionFalse, llmv1.ReasonProviderNotReady))
		Expect(meta.FindStatusCondition(getBatch(next)(Default).Status.Conditions, llmv1.ConditionAdmitted).Message).To(ContainSubstring(llmv1.ReasonAuthFailed))
		secret.Data["key"] = []byte(emulatorKey)
		Expect(k8sClient.Update(ctx, secret)).To(Succeed())
		Expect(waitFinished(next, timeout)).To(haveCondition(llmv1.ConditionComplete, metav1.ConditionTrue, llmv1.ReasonSucceeded))
	})

	It("waits while the provider's Secret is missing, then runs", func() {
		_, url := emulate(emulator.Config{})
		p := &llmv1.LLMProvider{ObjectMeta: metav1.ObjectMeta{Name: "keyless-" + ns}, Spec: llmv1.LLMProviderSpec{NamespaceSelector: &metav1.LabelSelector{},
			Type: llmv1.ProviderGemini, Endpoint: url, Model: "m",
			CredentialsSecretRef: &llmv1.SecretKeyReference{Namespace: ns, Name: "later", Key: "key"},
		}}
		Expect(k8sClient.Create(ctx, p)).To(Succeed())
		b := batchOf(ns, "patient", p.Name, 3, nil)
		Eventually(getBatch(b), timeout, interval).Should(haveCondition(llmv1.ConditionAdmitted, metav1.ConditionFalse, llmv1.ReasonProviderNotReady))
		Expect(k8sClient.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "later"},
			Data: map[string][]byte{"key": []byte(emulatorKey)}})).To(Succeed())
		waitFinished(b, timeout)
	})
})

var _ = Describe("API writes", func() {
	It("stay well under one per item (figure for docs/benchmarks.md)", func() {
		ns := newNamespace()
		_, url := emulate(emulator.Config{})
		p := providerFor(ns, url, func(s *llmv1.LLMProviderSpec) {
			s.Limits.RequestsPerMinute = ptr.To[int32](100000)
			s.Limits.MaxConcurrency = 8
		})
		waitReady(p)
		const n = 400
		before := apiWrites.Load()
		b := batchOf(ns, "bulk", p.Name, n, func(s *llmv1.InferenceBatchSpec) {
			s.BatchSize = 1000
			s.BatchDelayMilliseconds = nil
		})
		waitFinished(b, 2*timeout)
		writes := apiWrites.Load() - before
		perItem := float64(writes) / n
		GinkgoWriter.Printf("API writes for %d items: %d (%.3f per item)\n", n, writes, perItem)
		AddReportEntry("API writes per item", fmt.Sprintf("%.3f (%d writes for %d items)", perItem, writes, n))
		Expect(perItem).To(BeNumerically("<", 1.0))
	})
})
