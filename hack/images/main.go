// Command images builds the project's OCI images without a container
// engine: each is a distroless-like base (passwd with nonroot 65532, CA
// certificates from Debian's ca-certificates, /tmp), the Debian libraries a
// cgo binary needs, and the binary, written as an OCI image archive
// (bin/images/<name>.tar) that `ctr images import`, `crane push` (after
// untarring) and `skopeo copy oci-archive:` take. Everything an image's
// digest depends on comes from the inputs: file times are the commit's time,
// owners and order are fixed, so the same source gives the same digest.
//
// `make images` runs it; docs/install.md says how to push the results.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/llmquota/llmquota/internal/testbed/ollamaserver"
)

type options struct {
	binDir, debDir, outDir string
	repository, version    string
	revision, source       string
	created                time.Time
	products               bool
	ollama, pause          string
	gatewayClient          string
	gatewayClientNode      string
}

func main() {
	var o options
	var created string
	flag.StringVar(&o.binDir, "bin", "bin", "Folder holding the binaries, one per image name.")
	flag.StringVar(&o.debDir, "debs", "bin/debs", "Folder holding the downloaded Debian packages (hack/images/debs.sh).")
	flag.StringVar(&o.outDir, "out", "bin/images", "Folder the image archives are written to.")
	flag.StringVar(&o.repository, "repository", "ghcr.io/llmquota", "Repository prefix of the image names.")
	flag.StringVar(&o.version, "version", "dev", "Image tag and version label (make images: git describe).")
	flag.StringVar(&o.revision, "revision", "", "Source revision label (the commit).")
	flag.StringVar(&o.source, "source", "https://github.com/llmquota/llmquota", "Source label.")
	flag.StringVar(&created, "created", os.Getenv("SOURCE_DATE_EPOCH"), "Creation time in Unix seconds, for every file and the config (make images: the commit's time).")
	flag.BoolVar(&o.products, "products", true, "Build the published images (manager, node-agent, provider-emulator, gateway).")
	flag.StringVar(&o.ollama, "ollama", "", "Build the ollama-tiny test image (for the real cluster test) from this ollama binary.")
	flag.StringVar(&o.pause, "pause", "", "Build the pause test image (the real cluster's sandbox) from this binary.")
	flag.StringVar(&o.gatewayClient, "gateway-client", "", "Build the gateway-client test image (the real cluster's app calling the gateway) from this binary.")
	flag.StringVar(&o.gatewayClientNode, "gateway-client-node", "", "Build the gateway-client-node test image (the same app with the OpenAI Node SDK) from this folder (node and app/, hack/cluster/node-app.sh).")
	flag.Parse()
	secs, err := strconv.ParseInt(created, 10, 64)
	if err != nil {
		fail(fmt.Errorf("--created %q: want Unix seconds (SOURCE_DATE_EPOCH)", created))
	}
	o.created = time.Unix(secs, 0).UTC()
	if err := run(o); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "images:", err)
	os.Exit(1)
}

func run(o options) error {
	if err := os.MkdirAll(o.outDir, 0o755); err != nil {
		return err
	}
	type named struct {
		spec
		ref string
	}
	var specs []named
	if o.products {
		for _, s := range products {
			s.binary = filepath.Join(o.binDir, s.name)
			specs = append(specs, named{s, fmt.Sprintf("%s/%s:%s", o.repository, s.name, o.version)})
		}
	}
	if o.pause != "" {
		specs = append(specs, named{pauseTest(o.pause), testRepository + "/pause:" + testTag})
	}
	if o.gatewayClient != "" {
		specs = append(specs, named{gatewayClientTest(o.gatewayClient), testRepository + "/gateway-client:" + testTag})
	}
	if o.gatewayClientNode != "" {
		specs = append(specs, named{gatewayClientNodeTest(o.gatewayClientNode), testRepository + "/gateway-client-node:" + testTag})
	}
	if o.ollama != "" {
		server, err := ollamaserver.Start(o.ollama)
		if err != nil {
			return fmt.Errorf("generating the ollama-tiny models: %w", err)
		}
		defer server.Close()
		specs = append(specs, named{ollamaTest(o.ollama, server.ModelsDir()), testRepository + "/ollama-tiny:" + testTag})
	}
	certs, err := readDeb(o.debDir, "ca-certificates", caBundle)
	if err != nil {
		return err
	}
	for _, s := range specs {
		digest, err := build(o, certs, s.spec, s.ref, filepath.Join(o.outDir, s.name+".tar"))
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		if err := os.WriteFile(filepath.Join(o.outDir, s.name+".digest"), []byte(digest+"\n"), 0o644); err != nil {
			return err
		}
		fmt.Printf("%s %s@%s\n", filepath.Join(o.outDir, s.name+".tar"), s.ref, digest)
	}
	return nil
}
