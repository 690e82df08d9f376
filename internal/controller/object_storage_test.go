package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/egress"
	"github.com/llmquota/llmquota/internal/emulator"
	"github.com/llmquota/llmquota/internal/objectstore"
	"github.com/llmquota/llmquota/internal/results"
	"github.com/llmquota/llmquota/internal/testbed/minioserver"
)

// Batches whose items come from, and whose results go to, a real MinIO.
var _ = Describe("Object storage", Ordered, func() {
	var (
		srv    *minioserver.Server
		bucket *objectstore.Store
		ns     string
		p      *llmv1.LLMProvider
	)
	ctx := context.Background()
	location := func(name string) llmv1.S3Bucket {
		return llmv1.S3Bucket{Endpoint: srv.Endpoint, Bucket: name, CredentialsSecretName: "s3"}
	}
	jsonl := func(n, low int) []byte {
		var b strings.Builder
		for i := range n {
			score := "0.9"
			if i < low {
				score = "0.1"
			}
			fmt.Fprintf(&b, "{\"id\":\"item-%05d\",\"prompt\":\"headline %d\",\"score\":%s}\n", i, i, score)
		}
		return []byte(b.String())
	}
	s3BatchOf := func(provider, name, key string, out llmv1.S3Bucket, prefix string) *llmv1.InferenceBatch {
		return batchOf(ns, name, provider, 0, func(s *llmv1.InferenceBatchSpec) {
			s.Items, s.BatchSize, s.BatchDelayMilliseconds = nil, 20, nil
			s.ItemsFrom = &llmv1.ItemsSource{S3: &llmv1.S3ObjectReference{S3Bucket: location("batches"), Key: key}}
			s.Output = llmv1.OutputSpec{Kind: llmv1.OutputS3, S3: &llmv1.S3Output{S3Bucket: out, Prefix: prefix}}
		})
	}
	s3Batch := func(name, key string, out llmv1.S3Bucket, prefix string) *llmv1.InferenceBatch {
		return s3BatchOf(p.Name, name, key, out, prefix)
	}
	manifest := func(key string) results.Manifest {
		r, err := bucket.Get(ctx, key, "")
		Expect(err).NotTo(HaveOccurred())
		defer func() { _ = r.Close() }()
		data, err := io.ReadAll(r)
		Expect(err).NotTo(HaveOccurred())
		var m results.Manifest
		Expect(json.Unmarshal(data, &m)).To(Succeed())
		return m
	}

	BeforeAll(func() {
		var err error
		srv, err = minioserver.StartFromEnv()
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(srv.Close)
		Expect(srv.MakeBucket("batches")).To(Succeed())
		bucket, err = objectstore.Open(objectstore.Location{Endpoint: srv.Endpoint, Bucket: "batches", AccessKeyID: minioserver.User, SecretKey: minioserver.Password}, egress.MustParse("127.0.0.1"))
		Expect(err).NotTo(HaveOccurred())
		ns = newNamespace()
		// A key with a trailing newline, as `kubectl create secret --from-file` writes it.
		Expect(k8sClient.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "s3"},
			Data: map[string][]byte{objectstore.AccessKeyID: []byte(minioserver.User + "\n"), objectstore.SecretAccessKey: []byte(minioserver.Password)}})).To(Succeed())
		_, url := emulate(emulator.Config{})
		p = providerFor(ns, url, func(s *llmv1.LLMProviderSpec) { s.Limits.MaxConcurrency = 8 })
	})

	It("streams the items of an object larger than it holds, and writes the results as parts and a manifest", func() {
		Expect(bucket.Put(ctx, "in/news.jsonl", jsonl(300, 100), "")).To(Succeed())
		b := s3Batch("from-s3", "in/news.jsonl", location("batches"), "out/news/")
		got := waitFinished(b, timeout)
		Expect(got.Status.Counts.Succeeded).To(BeEquivalentTo(200))
		Expect(got.Status.Counts.Filtered).To(BeEquivalentTo(100))
		Expect(got.Status.Results).To(ConsistOf(llmv1.ResultReference{Kind: "S3", Name: "s3://batches/out/news/manifest.json", Items: 300}))
		m := manifest("out/news/manifest.json")
		Expect(m.Counts).To(Equal(map[string]int32{results.Succeeded: 200, results.Filtered: 100}))
		var cms corev1.ConfigMapList
		Expect(k8sClient.List(ctx, &cms, client.InNamespace(ns), client.MatchingLabels{results.LabelBatch: b.Name})).To(Succeed())
		Expect(cms.Items).To(BeEmpty(), "no result ConfigMaps with the S3 sink")
	})

	It("names the object and the line of a bad input, and runs once it is fixed", func() {
		data := append(jsonl(2, 0), []byte("{\"id\":\"x\",\"prompt\":\n")...)
		Expect(bucket.Put(ctx, "in/bad.jsonl", data, "")).To(Succeed())
		b := s3Batch("bad-input", "in/bad.jsonl", location("batches"), "out/bad/")
		Eventually(getBatch(b), timeout, interval).Should(haveCondition(llmv1.ConditionAdmitted, metav1.ConditionFalse, llmv1.ReasonInvalidItems))
		msg := meta.FindStatusCondition(getBatch(b)(Default).Status.Conditions, llmv1.ConditionAdmitted).Message
		Expect(msg).To(And(ContainSubstring("s3://batches/in/bad.jsonl"), ContainSubstring("line 3")))
		Expect(bucket.Put(ctx, "in/bad.jsonl", jsonl(3, 0), "")).To(Succeed())
		Expect(waitFinished(b, timeout).Status.Counts.Succeeded).To(BeEquivalentTo(3))
	})

	It("waits with a condition for a missing input object or output bucket", func() {
		b := s3Batch("missing", "in/later.jsonl", location("later"), "")
		Eventually(getBatch(b), timeout, interval).Should(haveCondition(llmv1.ConditionAdmitted, metav1.ConditionFalse, llmv1.ReasonInvalidItems))
		Expect(meta.FindStatusCondition(getBatch(b)(Default).Status.Conditions, llmv1.ConditionAdmitted).Message).
			To(ContainSubstring("s3://batches/in/later.jsonl: the object does not exist"))
		Expect(bucket.Put(ctx, "in/later.jsonl", jsonl(4, 0), "")).To(Succeed())
		Eventually(getBatch(b), timeout, interval).Should(haveCondition(llmv1.ConditionAdmitted, metav1.ConditionFalse, llmv1.ReasonOutputUnavailable))
		Expect(meta.FindStatusCondition(getBatch(b)(Default).Status.Conditions, llmv1.ConditionAdmitted).Message).
			To(ContainSubstring("s3://later/" + ns + "/missing/: the bucket does not exist"))
		Expect(srv.MakeBucket("later")).To(Succeed())
		Expect(waitFinished(b, timeout).Status.Counts.Succeeded).To(BeEquivalentTo(4))
		Expect(manifest2(srv, "later", ns+"/missing/manifest.json").Counts[results.Succeeded]).To(BeEquivalentTo(4))
	})

	It("keeps the results of a run whose bucket vanished until it is back, saying so", func() {
		Expect(srv.MakeBucket("vanishing")).To(Succeed())
		Expect(bucket.Put(ctx, "in/v.jsonl", jsonl(50, 0), "")).To(Succeed())
		b := s3Batch("vanishing", "in/v.jsonl", location("vanishing"), "out/")
		Eventually(getBatch(b), timeout, interval).Should(haveCondition(llmv1.ConditionAdmitted, metav1.ConditionTrue, "Admitted"))
		Expect(srv.RemoveBucket("vanishing")).To(Succeed())
		Eventually(getBatch(b), timeout, interval).Should(haveCondition(llmv1.ConditionProgressing, metav1.ConditionFalse, llmv1.ReasonOutputUnavailable))
		Expect(meta.FindStatusCondition(getBatch(b)(Default).Status.Conditions, llmv1.ConditionProgressing).Message).
			To(And(ContainSubstring("50 results wait"), ContainSubstring("s3://vanishing/out/part-00000.jsonl: the bucket does not exist")))
		Expect(srv.MakeBucket("vanishing")).To(Succeed())
		Expect(waitFinished(b, timeout).Status.Counts.Succeeded).To(BeEquivalentTo(50))
		Expect(manifest2(srv, "vanishing", "out/manifest.json").Counts[results.Succeeded]).To(BeEquivalentTo(50))
	})

	// A run that goes back to waiting while its answers wait for their
	// write: the answers are written once the bucket is back, shown while
	// the batch waits, and never paid for again.
	DescribeTable("keeps, and shows, what a run answered when the batch waits again while the results wait to be written",
		func(name, reason string, takeAway func(own *llmv1.LLMProvider, key *corev1.Secret), giveBack func(own *llmv1.LLMProvider, key *corev1.Secret)) {
			emu, url := emulate(emulator.Config{})
			key := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-key"}, Data: map[string][]byte{"key": []byte(emulatorKey)}}
			Expect(k8sClient.Create(ctx, key)).To(Succeed())
			own := providerFor(ns, url, func(s *llmv1.LLMProviderSpec) {
				s.Limits.MaxConcurrency = 8
				s.CredentialsSecretRef = &llmv1.SecretKeyReference{Namespace: ns, Name: llmv1.LocalObjectName(key.Name), Key: "key"}
			})
			Expect(srv.MakeBucket(name)).To(Succeed())
			Expect(bucket.Put(ctx, "in/"+name+".jsonl", jsonl(30, 0), "")).To(Succeed())
			b := s3BatchOf(own.Name, name, "in/"+name+".jsonl", location(name), "out/")
			Eventually(getBatch(b), timeout, interval).Should(haveCondition(llmv1.ConditionAdmitted, metav1.ConditionTrue, "Admitted"))
			Expect(srv.RemoveBucket(name)).To(Succeed())
			Eventually(getBatch(b), timeout, interval).Should(haveCondition(llmv1.ConditionProgressing, metav1.ConditionFalse, llmv1.ReasonOutputUnavailable))
			Expect(emu.Log()).To(HaveLen(30), "every item was answered before the batch waits")

			takeAway(own, key)
			Eventually(getBatch(b), timeout, interval).Should(haveCondition(llmv1.ConditionAdmitted, metav1.ConditionFalse, reason))
			Expect(srv.MakeBucket(name)).To(Succeed())
			Eventually(func(g Gomega) {
				got := getBatch(b)(g)
				g.Expect(got.Status.Counts).To(Equal(llmv1.ItemCounts{Total: 30, Succeeded: 30}), "the waiting batch shows what it stored")
				g.Expect(got.Status.Results).NotTo(BeEmpty())
				g.Expect(got.Status.Progress).To(Equal("30/30"))
				g.Expect(got.Status.EstimatedCompletionTime).To(BeNil())
				g.Expect(got).To(SatisfyAll(haveCondition(llmv1.ConditionAdmitted, metav1.ConditionFalse, reason),
					haveCondition(llmv1.ConditionRateLimited, metav1.ConditionFalse, llmv1.ReasonWithinLimits)))
			}, timeout, interval).Should(Succeed())

			By("finishing without sending an item again once the batch may run")
			giveBack(own, key)
			Expect(waitFinished(b, timeout).Status.Counts.Succeeded).To(BeEquivalentTo(30))
			Expect(emu.Log()).To(HaveLen(30), "an answer was paid twice")
		},
		Entry("its provider deleted", "stranded", llmv1.ReasonProviderNotFound,
			func(own *llmv1.LLMProvider, _ *corev1.Secret) { Expect(k8sClient.Delete(ctx, own)).To(Succeed()) },
			func(own *llmv1.LLMProvider, _ *corev1.Secret) {
				again := own.DeepCopy()
				again.ObjectMeta = metav1.ObjectMeta{Name: own.Name}
				Eventually(func() error { return k8sClient.Create(ctx, again) }, timeout, interval).Should(Succeed())
			}),
		Entry("its provider's Secret deleted", "keyless", llmv1.ReasonProviderNotReady,
			func(_ *llmv1.LLMProvider, key *corev1.Secret) { Expect(k8sClient.Delete(ctx, key)).To(Succeed()) },
			func(_ *llmv1.LLMProvider, key *corev1.Secret) {
				again := key.DeepCopy()
				again.ObjectMeta = metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}
				Eventually(func() error { return k8sClient.Create(ctx, again) }, timeout, interval).Should(Succeed())
			}),
	)

	It("refuses credentials the store does not know, naming the bucket", func() {
		Expect(k8sClient.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "wrong"},
			Data: map[string][]byte{objectstore.AccessKeyID: []byte("nobody"), objectstore.SecretAccessKey: []byte("nothing-at-all")}})).To(Succeed())
		Expect(bucket.Put(ctx, "in/w.jsonl", jsonl(2, 0), "")).To(Succeed())
		b := batchOf(ns, "wrong-key", p.Name, 0, func(s *llmv1.InferenceBatchSpec) {
			s.Items = nil
			in := location("batches")
			in.CredentialsSecretName = "wrong"
			s.ItemsFrom = &llmv1.ItemsSource{S3: &llmv1.S3ObjectReference{S3Bucket: in, Key: "in/w.jsonl"}}
		})
		Eventually(getBatch(b), timeout, interval).Should(haveCondition(llmv1.ConditionAdmitted, metav1.ConditionFalse, llmv1.ReasonInvalidItems))
		Expect(meta.FindStatusCondition(getBatch(b)(Default).Status.Conditions, llmv1.ConditionAdmitted).Message).
			To(ContainSubstring("s3://batches/in/w.jsonl: the store does not know the access key id"))
	})

	It("refuses endpoints outside the allow-list, input and output alike, without dialing them", func() {
		metadata := llmv1.S3Bucket{Endpoint: "http://169.254.169.254", Bucket: "latest", CredentialsSecretName: "s3"}
		internal := llmv1.S3Bucket{Endpoint: "https://10.96.0.1:443", Bucket: "api", CredentialsSecretName: "s3"} // a Service's ClusterIP
		in := batchOf(ns, "to-metadata", p.Name, 0, func(s *llmv1.InferenceBatchSpec) {
			s.Items = nil
			s.ItemsFrom = &llmv1.ItemsSource{S3: &llmv1.S3ObjectReference{S3Bucket: metadata, Key: "meta-data"}}
		})
		out := batchOf(ns, "to-internal", p.Name, 2, func(s *llmv1.InferenceBatchSpec) {
			s.Output = llmv1.OutputSpec{Kind: llmv1.OutputS3, S3: &llmv1.S3Output{S3Bucket: internal}}
		})
		for b, want := range map[*llmv1.InferenceBatch]string{
			in:  "object storage http://169.254.169.254: endpoint 169.254.169.254 is not allowed: not in the allow-list",
			out: "object storage https://10.96.0.1:443: endpoint 10.96.0.1 is not allowed: not in the allow-list",
		} {
			Eventually(getBatch(b), timeout, interval).Should(haveCondition(llmv1.ConditionAdmitted, metav1.ConditionFalse, llmv1.ReasonEndpointNotAllowed))
			Expect(meta.FindStatusCondition(getBatch(b)(Default).Status.Conditions, llmv1.ConditionAdmitted).Message).To(ContainSubstring(want))
			Eventually(func() []string { return eventReasons(b) }, timeout, interval).Should(ContainElement("Warning/" + llmv1.ReasonEndpointNotAllowed))
		}
	})
})

// manifest2 reads a manifest from another bucket with the root account.
func manifest2(srv *minioserver.Server, name, key string) results.Manifest {
	b, err := objectstore.Open(objectstore.Location{Endpoint: srv.Endpoint, Bucket: name, AccessKeyID: minioserver.User, SecretKey: minioserver.Password}, egress.MustParse("127.0.0.1"))
	Expect(err).NotTo(HaveOccurred())
	r, err := b.Get(context.Background(), key, "")
	Expect(err).NotTo(HaveOccurred())
	defer func() { _ = r.Close() }()
	var m results.Manifest
	Expect(json.NewDecoder(r).Decode(&m)).To(Succeed())
	return m
}
