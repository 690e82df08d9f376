package integration

import (
	"context"
	"os"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
)

var samplesDir = filepath.Join("..", "..", "config", "samples")

func sampleFiles() []string {
	files, err := filepath.Glob(filepath.Join(samplesDir, "llmquota_*.yaml"))
	Expect(err).NotTo(HaveOccurred())
	Expect(files).NotTo(BeEmpty())
	return files
}

var _ = Describe("Samples", Ordered, func() {
	var kubectl func(args ...string) (string, error)

	BeforeAll(func() {
		admin, err := testEnv.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
		Expect(err).NotTo(HaveOccurred())
		k, err := admin.Kubectl()
		Expect(err).NotTo(HaveOccurred())
		kubectl = func(args ...string) (string, error) {
			stdout, stderr, err := k.Run(args...)
			out := ""
			if stdout != nil {
				b, _ := readAll(stdout)
				out += b
			}
			if stderr != nil {
				b, _ := readAll(stderr)
				out += b
			}
			return out, err
		}
	})

	It("pass kubectl apply --dry-run=server, then apply for real", func() {
		for _, f := range sampleFiles() {
			out, err := kubectl("apply", "--dry-run=server", "-n", "default", "-f", f)
			Expect(err).NotTo(HaveOccurred(), "%s: %s", f, out)
			Expect(out).To(ContainSubstring("(server dry run)"))
			out, err = kubectl("apply", "-n", "default", "-f", f)
			Expect(err).NotTo(HaveOccurred(), "%s: %s", f, out)
		}
	})

	It("refuses a bad manifest through kubectl with the field named", func() {
		bad := filepath.Join(GinkgoT().TempDir(), "bad.yaml")
		Expect(os.WriteFile(bad, []byte(strings.Replace(goodProvider, "requestsPerDay: 1500", "requestsPerDay: 100", 1)), 0o600)).To(Succeed())
		out, err := kubectl("create", "--dry-run=server", "-f", bad)
		Expect(err).To(HaveOccurred())
		Expect(out).To(ContainSubstring("spec.limits.requestsPerDay"))
		Expect(out).To(ContainSubstring("requestsPerDay must not be lower than requestsPerHour"))
	})

	It("keeps the original report's example: 136 items, 41 at or above 0.20", func() {
		var batch llmv1.InferenceBatch
		Expect(k8sClient.Get(context.Background(), types.NamespacedName{Namespace: "default", Name: "news-sentiment"}, &batch)).To(Succeed())
		Expect(batch.Spec.Items).To(HaveLen(136))
		kept := 0
		for _, it := range batch.Spec.Items {
			if string(it.Score) >= "0.20" { // two-decimal strings compare like numbers
				kept++
			}
		}
		Expect(kept).To(Equal(41))
	})

	It("applies the original report's defaults to a minimal provider", func() {
		p := manifest(`
apiVersion: llmquota.dev/v1alpha1
kind: LLMProvider
metadata: {name: minimal-ollama}
spec:
  type: Ollama
  ollama: {namespace: llm, podSelector: {matchLabels: {app: ollama}}}
`)
		Expect(k8sClient.Create(context.Background(), p)).To(Succeed())
		var got llmv1.LLMProvider
		Expect(k8sClient.Get(context.Background(), client.ObjectKeyFromObject(p), &got)).To(Succeed())
		Expect(*got.Spec.Retry.MaxRetries).To(BeEquivalentTo(3))
		Expect(*got.Spec.Retry.InitialBackoffMilliseconds).To(BeEquivalentTo(2000))
		Expect(*got.Spec.Retry.MaxBackoffMilliseconds).To(BeEquivalentTo(60000))
		Expect(got.Spec.Limits.MaxConcurrency).To(BeEquivalentTo(1))
		Expect(*got.Spec.Ollama.GPUCleanupIntervalSeconds).To(BeEquivalentTo(300))
		Expect(*got.Spec.Ollama.Warmup.KeepAliveSeconds).To(BeEquivalentTo(1800))
		Expect(*got.Spec.Ollama.Warmup.TimeoutSeconds).To(BeEquivalentTo(60))
		Expect(got.Spec.Ollama.Warmup.Retries).To(BeEquivalentTo(3))
		Expect(got.Spec.Ollama.Port).To(BeEquivalentTo(11434))
		Expect(got.Spec.Ollama.GPUMemoryHighWatermark).To(BeEquivalentTo(90))
	})

	It("applies the original report's defaults to a minimal batch", func() {
		b := manifest(`
apiVersion: llmquota.dev/v1alpha1
kind: InferenceBatch
metadata: {name: minimal, namespace: default}
spec:
  providerRef: {name: gemini}
  items: [{id: a, prompt: hello}]
`)
		Expect(k8sClient.Create(context.Background(), b)).To(Succeed())
		var got llmv1.InferenceBatch
		Expect(k8sClient.Get(context.Background(), client.ObjectKeyFromObject(b), &got)).To(Succeed())
		Expect(got.Spec.BatchSize).To(BeEquivalentTo(5))
		Expect(*got.Spec.BatchDelayMilliseconds).To(BeEquivalentTo(2000))
		Expect(got.Spec.MinScore).To(BeEquivalentTo("0.20"))
		Expect(got.Spec.Cache).To(Equal(llmv1.CacheDisabled))
		Expect(got.Spec.Output.Kind).To(Equal(llmv1.OutputConfigMap))
	})
})
