package main

import "path/filepath"

// spec is one image: a binary on the distroless-like base, plus the
// Debian packages whose libraries a cgo binary links. The Dockerfile
// describes the same images for users with a container engine; keep the two
// in step.
type spec struct {
	name        string   // image name under the repository prefix
	binary      string   // the entrypoint, copied to /<its base name> (default <bin>/<name>)
	description string   // org.opencontainers.image.description
	debs        []string // packages whose shared libraries the image carries
	env         []string // extra environment
	extraDir    string   // a directory copied to extraAt (the test model store), if set
	extraAt     string
	cmd         []string
}

// products are the images `make images` builds and a release publishes.
var products = []spec{
	{name: "manager", description: "llmquota manager: keeps LLM traffic inside provider quotas"},
	{name: "node-agent", description: "llmquota node agent: warms Ollama pods, frees idle GPU memory, reports GPU memory via NVML",
		// go-nvml opens the driver's libnvidia-ml with dlopen: glibc.
		debs: []string{"libc6"}},
	{name: "provider-emulator", description: "llmquota provider emulator: Gemini, Anthropic, OpenAI and Ollama APIs with quotas and faults, for tests"},
	{name: "gateway", description: "llmquota gateway: the providers in the OpenAI, Anthropic and Gemini dialects, under the leader's quota"},
}

// testRepository and testTag name the images only the real cluster test
// uses; they are never published.
const (
	testRepository = "localhost/llmquota-test"
	testTag        = "test"
)

// pauseTest is the cluster's sandbox image (hack/cluster/pause).
func pauseTest(bin string) spec {
	return spec{name: "pause", description: "test only: the real cluster's sandbox container", binary: bin}
}

// gatewayClientTest is the app the real cluster test runs in a Pod to
// call the gateway with the official Anthropic Go SDK (not published).
func gatewayClientTest(bin string) spec {
	return spec{name: "gateway-client", description: "test only: calls the llmquota gateway with the Anthropic Go SDK", binary: bin}
}

// gatewayClientNodeTest is the same app in Node, with the official OpenAI
// Node SDK (not published): dir holds the node binary and app/ (staged by
// hack/cluster/node-app.sh). The entrypoint is node and the command the
// script, so a Pod's args (which replace the command) name the script
// first.
func gatewayClientNodeTest(dir string) spec {
	return spec{binary: filepath.Join(dir, "node"),
		name: "gateway-client-node", description: "test only: calls the llmquota gateway with the OpenAI Node SDK",
		debs:     []string{"libc6", "libstdc++6", "libgcc-s1"},
		env:      []string{"HOME=/tmp", "NODE_ENV=production"},
		extraDir: filepath.Join(dir, "app"), extraAt: "app",
		cmd: []string{"/app/app.mjs"},
	}
}

// ollamaTest is the Ollama server with generated tiny models that the real
// cluster test runs as an Ollama pool (not published).
func ollamaTest(bin, modelsDir string) spec {
	return spec{binary: bin,
		name: "ollama-tiny", description: "test only: CPU ollama serve with the generated tiny models",
		debs:     []string{"libc6", "libstdc++6", "libgcc-s1"},
		env:      []string{"OLLAMA_MODELS=/models", "OLLAMA_HOST=0.0.0.0:11434", "HOME=/tmp", "GIN_MODE=release", "OLLAMA_NOPRUNE=1"},
		extraDir: modelsDir, extraAt: "models",
		cmd: []string{"serve"},
	}
}
