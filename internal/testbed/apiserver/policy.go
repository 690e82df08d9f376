package apiserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
)

// repoDir is a directory of this repository, from its root.
func repoDir(parts ...string) string {
	_, here, _, _ := runtime.Caller(0)
	return filepath.Join(append([]string{filepath.Dir(here), "..", "..", ".."}, parts...)...)
}

// PolicyDir holds the ValidatingAdmissionPolicies the chart installs beside
// the CRDs (config/policy).
func PolicyDir() string { return repoDir("config", "policy") }

// InstallPolicies creates every object in the YAML files of dir (the
// ValidatingAdmissionPolicies and their bindings) and waits until the API
// server enforces them: a policy is loaded by an informer, a moment after
// it is created, and a test that expected a refusal before then would see
// its bad manifest accepted.
func InstallPolicies(ctx context.Context, c client.Client, dir string) error {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return err
	}
	created := 0
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		n, err := createAll(ctx, c, f)
		if err != nil {
			return err
		}
		created += n
	}
	if created == 0 { // an older commit's tree, from before the policies
		return nil
	}
	return waitEnforced(ctx, c)
}

// createAll creates the objects of one YAML file and says how many.
func createAll(ctx context.Context, c client.Client, file string) (int, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	n := 0
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return n, nil
			}
			return n, fmt.Errorf("%s: %w", file, err)
		}
		if len(u.Object) == 0 {
			continue
		}
		if err := c.Create(ctx, u); err != nil && !apierrors.IsAlreadyExists(err) {
			return n, fmt.Errorf("%s: create %s %s: %w", file, u.GetKind(), u.GetName(), err)
		}
		n++
	}
}

// waitEnforced dry-runs a batch with a repeated item id until the policy
// refuses it.
func waitEnforced(ctx context.Context, c client.Client) error {
	probe := &llmv1.InferenceBatch{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "policy-probe"},
		Spec: llmv1.InferenceBatchSpec{
			ProviderRef: llmv1.ProviderReference{Name: "probe"},
			Items:       []llmv1.Item{{ID: "a", Prompt: "p"}, {ID: "a", Prompt: "p"}},
		},
	}
	deadline := time.Now().Add(time.Minute)
	for {
		err := c.Create(ctx, probe.DeepCopy(), client.DryRunAll)
		if err != nil && strings.Contains(err.Error(), "item ids must be unique") {
			return nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				return errors.New("the InferenceBatch policy is not enforced a minute after it was created: a batch with a repeated id was accepted")
			}
			return fmt.Errorf("the InferenceBatch policy is not enforced a minute after it was created: a batch with a repeated id got: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
