//go:build cluster

package cluster

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// startPrometheus runs a real Prometheus (Debian's, extracted by
// hack/build-tools.sh) on this machine, scraping the managers' /metrics
// over HTTPS with a bearer token, as the chart's ServiceMonitor asks a
// prometheus-operator to, and the node agents' over plain HTTP, as its
// PodMonitor does. It returns the server's base URL; the spec's cleanup
// stops it.
func startPrometheus(targets []string, token string, agents []string) string {
	dir := GinkgoT().TempDir()
	tokenFile := filepath.Join(dir, "token")
	Expect(os.WriteFile(tokenFile, []byte(token), 0o600)).To(Succeed())
	config := fmt.Sprintf(`global: {scrape_interval: 1s, scrape_timeout: 1s}
scrape_configs:
- job_name: llmquota-manager
  scheme: https
  tls_config: {insecure_skip_verify: true}
  authorization: {credentials_file: %s}
  static_configs: [{targets: [%s]}]
- job_name: llmquota-node-agent
  static_configs: [{targets: [%s]}]
`, tokenFile, strings.Join(targets, ", "), strings.Join(agents, ", "))
	Expect(os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(config), 0o600)).To(Succeed())

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	addr := ln.Addr().String()
	Expect(ln.Close()).To(Succeed())
	log, err := os.Create(filepath.Join(dir, "prometheus.log"))
	Expect(err).NotTo(HaveOccurred())
	cmd := exec.Command(env("PROMETHEUS"), "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr)
	cmd.Stdout, cmd.Stderr = log, log
	Expect(cmd.Start()).To(Succeed())
	DeferCleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_, _ = cmd.Process.Wait()
		if CurrentSpecReport().Failed() {
			data, _ := os.ReadFile(log.Name())
			AddReportEntry("prometheus.log", string(data))
		}
	})
	return "http://" + addr
}

// promQuery runs an instant query and returns each series' labels and value.
func promQuery(base, query string) ([]promSample, error) {
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(query))
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, err
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("query %q: %s", query, body.Error)
	}
	var out []promSample
	for _, r := range body.Data.Result {
		v, _ := r.Value[1].(string)
		out = append(out, promSample{Labels: r.Metric, Value: v})
	}
	return out, nil
}

type promSample struct {
	Labels map[string]string
	Value  string
}

// scrapeHealth is "<instance>=<up>" for each target, sorted by Prometheus.
func scrapeHealth(base string) func() ([]string, error) {
	return func() ([]string, error) {
		samples, err := promQuery(base, `up{job="llmquota-manager"}`)
		var out []string
		for _, s := range samples {
			out = append(out, s.Labels["instance"]+"="+s.Value)
		}
		return out, err
	}
}

type panel struct {
	title   string
	exprs   []string
	legends []string
}

// dashboardPanels reads the chart's Grafana dashboard, with Grafana's
// $__rate_interval made concrete as Prometheus needs it, and the
// dashboard's $provider and $namespace variables set to All.
func dashboardPanels() []panel {
	data, err := os.ReadFile(filepath.Join(chartDir, "files", "dashboard.json"))
	Expect(err).NotTo(HaveOccurred())
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr         string `json:"expr"`
				LegendFormat string `json:"legendFormat"`
			} `json:"targets"`
		} `json:"panels"`
	}
	Expect(json.Unmarshal(data, &dash)).To(Succeed())
	var out []panel
	for _, p := range dash.Panels {
		var exprs, legends []string
		for _, t := range p.Targets {
			exprs = append(exprs, strings.NewReplacer("$__rate_interval", "1m", `"$provider"`, `".*"`, `"$namespace"`, `".*"`).Replace(t.Expr))
			legends = append(legends, t.LegendFormat)
		}
		out = append(out, panel{title: p.Title, exprs: exprs, legends: legends})
	}
	return out
}

// renderPanels is each panel's data at this instant as Grafana would label
// it: the panel's title, then one line per series, legend and value.
func renderPanels(prom string, panels []panel) string {
	legend := regexp.MustCompile(`\{\{\s*(\w+)\s*\}\}`)
	var b strings.Builder
	for _, p := range panels {
		fmt.Fprintf(&b, "%s\n", p.title)
		n := 0
		for i, expr := range p.exprs {
			samples, err := promQuery(prom, expr)
			Expect(err).NotTo(HaveOccurred())
			for _, s := range samples {
				name := legend.ReplaceAllStringFunc(p.legends[i], func(m string) string { return s.Labels[legend.FindStringSubmatch(m)[1]] })
				fmt.Fprintf(&b, "  %-60s %s\n", name, s.Value)
				n++
			}
		}
		if n == 0 {
			b.WriteString("  (no data: no GPU on this node)\n")
		}
		b.WriteString("\n")
	}
	return b.String()
}
