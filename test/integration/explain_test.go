package integration

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"
)

// plain prints a schema value as the Go marker wrote it (no 1e+06).
func plain(v any) string {
	if f, ok := v.(float64); ok {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	return fmt.Sprint(v)
}

// documentedBound is the sentence a field's description must hold for each
// default and bound its schema enforces, so `kubectl explain` states them.
func documentedBound(schema map[string]any) string {
	var parts []string
	if d, ok := schema["default"]; ok {
		if _, isObject := d.(map[string]any); !isObject {
			parts = append(parts, "Defaults to "+plain(d))
		}
	}
	lo, hasLo := schema["minimum"]
	hi, hasHi := schema["maximum"]
	switch {
	case hasLo && hasHi:
		parts = append(parts, plain(lo)+" to "+plain(hi))
	case hasLo:
		parts = append(parts, "at least "+plain(lo))
	case hasHi:
		parts = append(parts, "at most "+plain(hi))
	}
	if len(parts) == 0 {
		return ""
	}
	s := strings.Join(parts, "; ")
	return strings.ToUpper(s[:1]) + s[1:] + "."
}

// boundedFields walks a CRD's spec schema and returns, by explain path,
// the sentence each bounded or defaulted field must show.
func boundedFields(crdFile string) map[string]string {
	data, err := os.ReadFile(crdFile)
	Expect(err).NotTo(HaveOccurred())
	var crd map[string]any
	Expect(yaml.Unmarshal(data, &crd)).To(Succeed())
	spec := crd["spec"].(map[string]any)
	plural := spec["names"].(map[string]any)["plural"].(string)
	root := spec["versions"].([]any)[0].(map[string]any)["schema"].(map[string]any)["openAPIV3Schema"].(map[string]any)
	out := map[string]string{}
	var walk func(schema map[string]any, path string)
	walk = func(schema map[string]any, path string) {
		if want := documentedBound(schema); want != "" {
			out[path] = want
		}
		props, _ := schema["properties"].(map[string]any)
		for name, p := range props {
			walk(p.(map[string]any), path+"."+name)
		}
	}
	walk(root["properties"].(map[string]any)["spec"].(map[string]any), plural+".spec")
	return out
}

var _ = Describe("kubectl explain", func() {
	It("states every default and bound the schema enforces, as a user reads them", func() {
		user, err := testEnv.AddUser(envtest.User{Name: "reader", Groups: []string{"system:masters"}}, nil)
		Expect(err).NotTo(HaveOccurred())
		kubectl, err := user.Kubectl()
		Expect(err).NotTo(HaveOccurred())
		total := 0
		for _, file := range []string{"llmquota.dev_inferencebatches.yaml", "llmquota.dev_llmproviders.yaml"} {
			fields := boundedFields(filepath.Join("..", "..", "config", "crd", "bases", file))
			paths := make([]string, 0, len(fields))
			for p := range fields {
				paths = append(paths, p)
			}
			sort.Strings(paths)
			for _, path := range paths {
				// The API server publishes a new CRD's OpenAPI a moment after
				// it is established.
				var text []byte
				Eventually(func() error {
					stdout, stderr, err := kubectl.Run("explain", path)
					if err != nil {
						errText, _ := io.ReadAll(stderr)
						return fmt.Errorf("kubectl explain %s: %w: %s", path, err, errText)
					}
					text, _ = io.ReadAll(stdout)
					return nil
				}, "30s", "500ms").Should(Succeed())
				// explain wraps descriptions: compare with the line breaks folded.
				Expect(strings.Join(strings.Fields(string(text)), " ")).To(ContainSubstring(fields[path]), "kubectl explain %s", path)
				total++
			}
		}
		Expect(total).To(BeNumerically(">=", 20), "the walk found too few bounded fields: is the schema read right?")
	})
})
