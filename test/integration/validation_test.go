package integration

import (
	"context"
	"fmt"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

const goodProvider = `
apiVersion: llmquota.dev/v1alpha1
kind: LLMProvider
metadata:
  generateName: provider-
spec:
  type: Gemini
  credentialsSecretRef: {namespace: llmquota-system, name: gemini-api-key, key: api-key}
  limits: {requestsPerMinute: 10, requestsPerHour: 600, requestsPerDay: 1500, minIntervalMilliseconds: 3000}
  retry: {maxRetries: 3, initialBackoffMilliseconds: 2000, maxBackoffMilliseconds: 60000}
  cost:
    inputPerMillionTokens: "0.30"
    alerts: {daily: "5.00", monthly: "50.00"}
`

const goodBatch = `
apiVersion: llmquota.dev/v1alpha1
kind: InferenceBatch
metadata:
  generateName: batch-
  namespace: default
spec:
  providerRef: {name: gemini}
  minScore: "0.20"
  batchSize: 5
  items:
  - {id: a, prompt: "first", score: "0.50"}
  - {id: b, prompt: "second", score: "0.10"}
`

// edit changes one manifest; nil value deletes the field at path.
type edit struct {
	value any
	path  []string
}

func set(value any, path ...string) edit { return edit{value, path} }
func del(path ...string) edit            { return edit{nil, path} }

func manifest(text string, edits ...edit) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	Expect(yaml.Unmarshal([]byte(text), &u.Object)).To(Succeed())
	for _, e := range edits {
		if e.value == nil {
			unstructured.RemoveNestedField(u.Object, e.path...)
			continue
		}
		Expect(unstructured.SetNestedField(u.Object, e.value, e.path...)).To(Succeed())
	}
	return u
}

// refused creates the manifest and expects the API server to refuse it with
// an error that contains every one of want (the field path and the message).
func refused(base string, edits []edit, want ...string) {
	err := k8sClient.Create(context.Background(), manifest(base, edits...))
	Expect(err).To(HaveOccurred(), "the API server accepted a manifest it should refuse")
	for _, w := range want {
		Expect(err.Error()).To(ContainSubstring(w))
	}
}

func edits(e ...edit) []edit { return e }

var _ = Describe("LLMProvider validation", func() {
	It("accepts the good base manifest", func() {
		Expect(k8sClient.Create(context.Background(), manifest(goodProvider), client.DryRunAll)).To(Succeed())
	})

	DescribeTable("refuses bad manifests with a message naming the field",
		func(e []edit, want ...string) { refused(goodProvider, e, want...) },
		Entry("zero requestsPerMinute", edits(set(int64(0), "spec", "limits", "requestsPerMinute")),
			"spec.limits.requestsPerMinute", "greater than or equal to 1"),
		Entry("zero tokensPerDay", edits(set(int64(0), "spec", "limits", "tokensPerDay")),
			"spec.limits.tokensPerDay", "greater than or equal to 1"),
		Entry("zero outputTokensPerMinute for a model", edits(set([]any{map[string]any{"model": "opus", "limits": map[string]any{"outputTokensPerMinute": int64(0)}}}, "spec", "modelLimits")),
			"spec.modelLimits[0].limits.outputTokensPerMinute", "greater than or equal to 1"),
		Entry("a monthly alert lower than the daily one", edits(set(map[string]any{"daily": "50.00", "monthly": "5.00"}, "spec", "cost", "alerts")),
			"spec.cost.alerts.monthly", "alerts.monthly must not be lower than alerts.daily"),
		Entry("a monthly budget lower than the daily one", edits(set(map[string]any{"daily": "20.00", "monthly": "10.00"}, "spec", "cost", "budgets")),
			"spec.cost.budgets.monthly", "budgets.monthly must not be lower than budgets.daily"),
		Entry("a budget that is no decimal", edits(set(map[string]any{"daily": "ten"}, "spec", "cost", "budgets")),
			"spec.cost.budgets.daily"),
		Entry("a provider that is its own fallback", edits(del("metadata", "generateName"), set("gemini", "metadata", "name"),
			set(map[string]any{"name": "gemini"}, "spec", "fallback")),
			"spec.fallback.name", "spec.fallback must name another LLMProvider, not this one"),
		Entry("an interactive fallback without spec.fallback", edits(set(map[string]any{"fallback": "WhenLimited"}, "spec", "interactive")),
			"spec.interactive.fallback", "interactive.fallback WhenLimited needs spec.fallback"),
		Entry("an unknown interactive fallback policy", edits(set(map[string]any{"fallback": "Sometimes"}, "spec", "interactive")),
			"spec.interactive.fallback", "Unsupported value"),
		Entry("an unknown interactive cache policy", edits(set(map[string]any{"cache": "Always"}, "spec", "interactive")),
			"spec.interactive.cache", "Unsupported value"),
		Entry("a cache TTL of zero", edits(set(map[string]any{"cache": "Enabled", "cacheTTLSeconds": int64(0)}, "spec", "interactive")),
			"spec.interactive.cacheTTLSeconds", "greater than or equal to 1"),
		Entry("namespace limits that set nothing", edits(set(map[string]any{"defaultLimits": map[string]any{}}, "spec", "shares")),
			"spec.shares.defaultLimits", "should have at least 1 properties"),
		Entry("a model's limits without limits", edits(set([]any{map[string]any{"model": "gemini-2.5-pro"}}, "spec", "modelLimits")),
			"spec.modelLimits[0].limits", "Required value"),
		Entry("an unknown adaptive mode", edits(set("Sometimes", "spec", "limits", "adaptive")),
			"spec.limits.adaptive", "Unsupported value"),
		Entry("negative requestsPerHour", edits(set(int64(-5), "spec", "limits", "requestsPerHour")),
			"spec.limits.requestsPerHour", "greater than or equal to 1"),
		Entry("zero requestsPerDay", edits(set(int64(0), "spec", "limits", "requestsPerDay")),
			"spec.limits.requestsPerDay", "greater than or equal to 1"),
		Entry("zero tokensPerMinute", edits(set(int64(0), "spec", "limits", "tokensPerMinute")),
			"spec.limits.tokensPerMinute", "greater than or equal to 1"),
		Entry("zero maxConcurrency", edits(set(int64(0), "spec", "limits", "maxConcurrency")),
			"spec.limits.maxConcurrency", "greater than or equal to 1"),
		Entry("day limit lower than hour limit", edits(set(int64(100), "spec", "limits", "requestsPerDay")),
			"spec.limits.requestsPerDay", "requestsPerDay must not be lower than requestsPerHour"),
		Entry("hour limit lower than minute limit", edits(set(int64(5), "spec", "limits", "requestsPerHour")),
			"spec.limits.requestsPerHour", "requestsPerHour must not be lower than requestsPerMinute"),
		Entry("day limit lower than minute limit without hour", edits(del("spec", "limits", "requestsPerHour"), set(int64(5), "spec", "limits", "requestsPerDay")),
			"spec.limits.requestsPerDay", "requestsPerDay must not be lower than requestsPerMinute"),
		Entry("negative minIntervalMilliseconds", edits(set(int64(-3000), "spec", "limits", "minIntervalMilliseconds")),
			"spec.limits.minIntervalMilliseconds", "greater than or equal to 0"),
		Entry("a duration string where milliseconds go", edits(set("3s", "spec", "limits", "minIntervalMilliseconds")),
			"spec.limits.minIntervalMilliseconds", "must be of type integer"),
		Entry("maxBackoff below initialBackoff", edits(set(int64(10000), "spec", "retry", "initialBackoffMilliseconds"), set(int64(5000), "spec", "retry", "maxBackoffMilliseconds")),
			"spec.retry.maxBackoffMilliseconds", "maxBackoffMilliseconds must not be less than initialBackoffMilliseconds"),
		Entry("maxBackoff below the default initialBackoff", edits(del("spec", "retry", "initialBackoffMilliseconds"), set(int64(1000), "spec", "retry", "maxBackoffMilliseconds")),
			"spec.retry.maxBackoffMilliseconds", "maxBackoffMilliseconds must not be less than initialBackoffMilliseconds"),
		Entry("zero initialBackoff", edits(set(int64(0), "spec", "retry", "initialBackoffMilliseconds")),
			"spec.retry.initialBackoffMilliseconds", "greater than or equal to 1"),
		Entry("negative maxRetries", edits(set(int64(-1), "spec", "retry", "maxRetries")),
			"spec.retry.maxRetries", "greater than or equal to 0"),
		Entry("unknown provider type", edits(set("Mistral", "spec", "type")),
			"spec.type", `Unsupported value: "Mistral"`),
		Entry("hosted provider without credentialsSecretRef", edits(del("spec", "credentialsSecretRef")),
			"spec.credentialsSecretRef", "credentialsSecretRef is required for hosted providers"),
		Entry("credentialsSecretRef without key", edits(del("spec", "credentialsSecretRef", "key")),
			"spec.credentialsSecretRef.key", "Required value"),
		Entry("ollama section on a hosted provider", edits(set(map[string]any{"namespace": "llm", "podSelector": map[string]any{}}, "spec", "ollama")),
			"spec.ollama", "ollama is only allowed when type is Ollama"),
		Entry("endpoint with another scheme", edits(set("ftp://example.com/v1", "spec", "endpoint")),
			"spec.endpoint", "endpoint must be an absolute http or https URL"),
		Entry("endpoint that is no URL", edits(set("not a url", "spec", "endpoint")),
			"spec.endpoint", "endpoint must be an absolute http or https URL"),
		Entry("negative price", edits(set("-1", "spec", "cost", "inputPerMillionTokens")),
			"spec.cost.inputPerMillionTokens", "must be a non-negative decimal number"),
		Entry("price that is no number", edits(set("cheap", "spec", "cost", "alerts", "daily")),
			"spec.cost.alerts.daily", "must be a non-negative decimal number"),
		Entry("a crashRepay that bounds nothing", edits(set(map[string]any{}, "spec", "crashRepay")),
			"spec.crashRepay", "should have at least 1 properties"),
		Entry("a crashRepay of zero calls", edits(set(map[string]any{"maxCalls": int64(0)}, "spec", "crashRepay")),
			"spec.crashRepay.maxCalls", "greater than or equal to 1"),
		Entry("a crashRepay cost that is no decimal", edits(set(map[string]any{"maxCost": "a dollar"}, "spec", "crashRepay")),
			"spec.crashRepay.maxCost", "must be a non-negative decimal number"),
		Entry("watermark above 100 percent", edits(set("Ollama", "spec", "type"), del("spec", "credentialsSecretRef"),
			set(map[string]any{"namespace": "llm", "podSelector": map[string]any{}, "gpuMemoryHighWatermark": int64(120)}, "spec", "ollama")),
			"spec.ollama.gpuMemoryHighWatermark", "less than or equal to 100"),
	)

	It("lets an Ollama provider go without credentials", func() {
		u := manifest(goodProvider, set("Ollama", "spec", "type"), del("spec", "credentialsSecretRef"),
			set(map[string]any{"namespace": "llm", "podSelector": map[string]any{"matchLabels": map[string]any{"app": "ollama"}}}, "spec", "ollama"))
		Expect(k8sClient.Create(context.Background(), u, client.DryRunAll)).To(Succeed())
	})
})

var _ = Describe("InferenceBatch validation", func() {
	It("accepts the good base manifest", func() {
		Expect(k8sClient.Create(context.Background(), manifest(goodBatch), client.DryRunAll)).To(Succeed())
	})

	item := func(fields ...string) map[string]any {
		m := map[string]any{}
		for i := 0; i+1 < len(fields); i += 2 {
			m[fields[i]] = fields[i+1]
		}
		return m
	}
	items := func(list ...map[string]any) []any {
		out := make([]any, len(list))
		for i, m := range list {
			out[i] = m
		}
		return out
	}

	DescribeTable("refuses bad manifests with a message naming the field",
		func(e []edit, want ...string) { refused(goodBatch, e, want...) },
		Entry("batchSize zero", edits(set(int64(0), "spec", "batchSize")),
			"spec.batchSize", "greater than or equal to 1"),
		Entry("minScore above one", edits(set("1.5", "spec", "minScore")),
			"spec.minScore", "must be a decimal between 0 and 1"),
		Entry("negative minScore", edits(set("-0.1", "spec", "minScore")),
			"spec.minScore", "must be a decimal between 0 and 1"),
		Entry("item score above one", edits(set(items(item("id", "a", "prompt", "p", "score", "2")), "spec", "items")),
			"spec.items[0].score", "must be a decimal between 0 and 1"),
		Entry("item without id", edits(set(items(item("prompt", "p")), "spec", "items")),
			"spec.items[0].id", "Required value"),
		Entry("item without prompt", edits(set(items(item("id", "a")), "spec", "items")),
			"spec.items[0].prompt", "Required value"),
		Entry("item with an empty prompt", edits(set(items(item("id", "a", "prompt", "")), "spec", "items")),
			"spec.items[0].prompt", "at least 1 chars long"),
		Entry("duplicate item ids", edits(set(items(item("id", "a", "prompt", "p"), item("id", "a", "prompt", "q")), "spec", "items")),
			"spec.items", "item ids must be unique within the batch; repeated: a"),
		Entry("a name longer than a label value", edits(del("metadata", "generateName"), set(strings.Repeat("b", 64), "metadata", "name")),
			"metadata.name: at most 63 characters"),
		Entry("several repeated ids, each named once", edits(set(items(item("id", "b", "prompt", "p"), item("id", "a", "prompt", "p"), item("id", "c", "prompt", "p"),
			item("id", "a", "prompt", "p"), item("id", "b", "prompt", "p"), item("id", "a", "prompt", "p")), "spec", "items")),
			"item ids must be unique within the batch; repeated: a, b"),
		Entry("both items and itemsFrom", edits(set(map[string]any{"configMapKeyRef": map[string]any{"name": "news", "key": "items.jsonl"}}, "spec", "itemsFrom")),
			"exactly one of items or itemsFrom must be set"),
		Entry("neither items nor itemsFrom", edits(del("spec", "items")),
			"exactly one of items or itemsFrom must be set"),
		Entry("itemsFrom without key", edits(del("spec", "items"), set(map[string]any{"configMapKeyRef": map[string]any{"name": "news"}}, "spec", "itemsFrom")),
			"spec.itemsFrom.configMapKeyRef.key", "Required value"),
		Entry("itemsFrom with both a ConfigMap and S3", edits(del("spec", "items"), set(map[string]any{
			"configMapKeyRef": map[string]any{"name": "news", "key": "items.jsonl"},
			"s3":              map[string]any{"endpoint": "http://minio:9000", "bucket": "inputs", "key": "a.jsonl", "credentialsSecretName": "s3"}}, "spec", "itemsFrom")),
			"itemsFrom needs exactly one of configMapKeyRef and s3"),
		Entry("itemsFrom S3 without a key", edits(del("spec", "items"), set(map[string]any{
			"s3": map[string]any{"endpoint": "http://minio:9000", "bucket": "inputs", "credentialsSecretName": "s3"}}, "spec", "itemsFrom")),
			"spec.itemsFrom.s3.key", "Required value"),
		Entry("S3 endpoint that is not a URL", edits(del("spec", "items"), set(map[string]any{
			"s3": map[string]any{"endpoint": "minio:9000", "bucket": "inputs", "key": "a.jsonl", "credentialsSecretName": "s3"}}, "spec", "itemsFrom")),
			"spec.itemsFrom.s3.endpoint", "should match"),
		Entry("output kind S3 without s3", edits(set(map[string]any{"kind": "S3"}, "spec", "output")),
			"output.s3 is required when output.kind is S3"),
		Entry("output s3 with kind ConfigMap", edits(set(map[string]any{"kind": "ConfigMap",
			"s3": map[string]any{"endpoint": "http://minio:9000", "bucket": "results", "credentialsSecretName": "s3"}}, "spec", "output")),
			"output.s3 is set but output.kind is not S3"),
		Entry("bucket name with capitals", edits(set(map[string]any{"kind": "S3",
			"s3": map[string]any{"endpoint": "http://minio:9000", "bucket": "Results", "credentialsSecretName": "s3"}}, "spec", "output")),
			"spec.output.s3.bucket", "should match"),
		Entry("negative batchDelayMilliseconds", edits(set(int64(-2000), "spec", "batchDelayMilliseconds")),
			"spec.batchDelayMilliseconds", "greater than or equal to 0"),
		Entry("providerRef without name", edits(set(map[string]any{}, "spec", "providerRef")),
			"spec.providerRef.name", "Required value"),
		Entry("unknown cache policy", edits(set("Sometimes", "spec", "cache")),
			"spec.cache", `Unsupported value: "Sometimes"`),
		Entry("zero activeDeadlineSeconds", edits(set(int64(0), "spec", "activeDeadlineSeconds")),
			"spec.activeDeadlineSeconds", "greater than or equal to 1"),
		Entry("temperature that is no number", edits(set("hot", "spec", "temperature")),
			"spec.temperature", "must be a non-negative decimal number"),
	)

	It("refuses inline items over 1 MiB with a message naming the limit and itemsFrom, not etcd's raw error", func() {
		list := make([]any, 100)
		for i := range list {
			list[i] = item("id", fmt.Sprintf("item-%04d", i), "prompt", strings.Repeat("é", 6000)) // 12,000 bytes, 6,000 characters
		}
		refused(goodBatch, edits(set(list, "spec", "items")), "at most 1 MiB of prompts and ids", "etcd's 1.5 MiB", "itemsFrom")
	})

	It("stores an inline batch just under the bound: a valid object fits etcd", func() {
		list := make([]any, 1000)
		for i := range list {
			list[i] = item("id", fmt.Sprintf("item-%04d", i), "prompt", strings.Repeat("x", 1035), "score", "0.5")
		}
		u := manifest(goodBatch, set(list, "spec", "items"), set(strings.Repeat("s", 32768), "spec", "system"))
		u.SetNamespace("default")
		u.SetName("just-under-the-bound")
		Expect(k8sClient.Create(context.Background(), u)).To(Succeed())
		Expect(k8sClient.Delete(context.Background(), u)).To(Succeed())
	})

	It("accepts the largest inline batch within the CEL cost budget", func() {
		list := make([]any, 1000)
		for i := range list {
			list[i] = item("id", fmt.Sprintf("item-%04d", i), "prompt", "p", "score", "0.5")
		}
		Expect(k8sClient.Create(context.Background(), manifest(goodBatch, set(list, "spec", "items")), client.DryRunAll)).To(Succeed())
	})
})
