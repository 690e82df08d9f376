package chart

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
)

// TestGrafanaDashboard renders the dashboard ConfigMap and checks its
// shape; test/cluster runs every query against a real Prometheus scraping
// the real manager and node agent.
func TestGrafanaDashboard(t *testing.T) {
	if objs := render(t); find(objs, "ConfigMap", "rel-llmquota-dashboard") != nil {
		t.Fatal("the dashboard is rendered by default; it is opt-in")
	}
	objs := render(t, "grafana.dashboard.enabled=true", "grafana.dashboard.annotations.grafana_folder=LLM")
	cm := find(objs, "ConfigMap", "rel-llmquota-dashboard")
	if cm == nil {
		t.Fatal("grafana.dashboard.enabled=true renders no dashboard ConfigMap")
	}
	if dig(cm, "metadata", "labels", "grafana_dashboard") != "1" || dig(cm, "metadata", "annotations", "grafana_folder") != "LLM" {
		t.Errorf("the sidecar's label or folder annotation is missing: %v", dig(cm, "metadata"))
	}
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			ID         int            `json:"id"`
			Title      string         `json:"title"`
			Datasource map[string]any `json:"datasource"`
			Targets    []struct {
				Expr         string `json:"expr"`
				LegendFormat string `json:"legendFormat"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal([]byte(dig(cm, "data", "llmquota.json").(string)), &dash); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	if dash.UID == "" || len(dash.Panels) < 10 {
		t.Fatalf("uid %q, %d panels", dash.UID, len(dash.Panels))
	}
	ids := map[int]bool{}
	metric := regexp.MustCompile(`\bllmquota_[a-z_]+`)
	for _, p := range dash.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		if p.Datasource["uid"] != "${datasource}" {
			t.Errorf("panel %q does not use the dashboard's Prometheus variable", p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			if !metric.MatchString(q.Expr) || strings.TrimSpace(q.LegendFormat) == "" {
				t.Errorf("panel %q: query %q names no llmquota series or has no legend", p.Title, q.Expr)
			}
		}
	}
}
