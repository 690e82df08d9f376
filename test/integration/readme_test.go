package integration

import (
	"context"
	"os"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The README's first example, "What you apply", as a stranger copies it.
var _ = Describe("The README's first example", func() {
	It("is accepted by the API server, and its provider names a model (a batch on a provider without one waits with NoModel)", func() {
		readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
		Expect(err).NotTo(HaveOccurred())
		_, rest, found := strings.Cut(string(readme), "## What you apply")
		Expect(found).To(BeTrue(), "the README has no \"What you apply\" section")
		_, rest, found = strings.Cut(rest, "```yaml\n")
		Expect(found).To(BeTrue())
		block, _, found := strings.Cut(rest, "```")
		Expect(found).To(BeTrue())
		kinds := []string{}
		for _, doc := range strings.Split(block, "\n---\n") {
			u := manifest(doc)
			u.SetName(u.GetName() + "-readme") // other specs made objects of the README's names
			if u.GetKind() == "InferenceBatch" {
				u.SetNamespace("default")
			}
			Expect(k8sClient.Create(context.Background(), u, client.DryRunAll)).To(Succeed(), "%s %s", u.GetKind(), u.GetName())
			if u.GetKind() == "LLMProvider" {
				model, _, _ := unstructured.NestedString(u.Object, "spec", "model")
				Expect(model).NotTo(BeEmpty(), "the README's provider names no spec.model")
			}
			kinds = append(kinds, u.GetKind())
		}
		Expect(kinds).To(Equal([]string{"LLMProvider", "InferenceBatch"}))
	})
})
