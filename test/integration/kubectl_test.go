package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/llmquota/llmquota/internal/testbed/apiserver"
)

// The install paths docs/install.md gives, as written, with the real
// kubectl (built beside the API server): kubectl validates strictly, where
// Helm and the Go client drop an unknown field with a warning.
var _ = Describe("The documented kubectl install paths", func() {
	It("apply as written: the admission policy alone, and config/default", func() {
		kubectl := filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl")
		Expect(kubectl).To(BeAnExistingFile(), "make test builds kubectl beside the API server")
		kubeconfig, err := apiserver.WriteAdminKubeconfig(testEnv, GinkgoT().TempDir(), "installer", nil)
		Expect(err).NotTo(HaveOccurred())
		root := filepath.Join("..", "..")
		for _, args := range [][]string{
			{"apply", "-f", filepath.Join(root, "config", "policy", "inferencebatch-spec.yaml")},
			{"apply", "-k", filepath.Join(root, "config", "default")},
		} {
			out, err := exec.Command(kubectl, append([]string{"--kubeconfig", kubeconfig}, args...)...).CombinedOutput()
			Expect(err).NotTo(HaveOccurred(), "kubectl %v:\n%s", args, out)
			for _, line := range strings.Split(string(out), "\n") {
				// The suite made some of these objects without kubectl, which
				// kubectl notes; any other warning (an unknown field) is a defect.
				if strings.HasPrefix(line, "Warning:") && !strings.Contains(line, "last-applied-configuration") {
					Fail(fmt.Sprintf("kubectl %v warned: %s", args, line))
				}
			}
		}
	})
})
