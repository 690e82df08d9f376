package dashboard

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
)

// Snapshot is everything the dashboard shows, at one instant. Its JSON is
// what `kubectl llmquota top -o json` prints.
type Snapshot struct {
	Time      time.Time  `json:"time"`
	Providers []Provider `json:"providers"`
	Batches   []Batch    `json:"batches"`
}

// Provider is one LLMProvider's health, windows and cost.
type Provider struct {
	Name string `json:"name"`
	Type string `json:"type"`
	// Ready, Health and Limited are the reasons of the Ready, Degraded and
	// RateLimited conditions ("" before the manager has seen it).
	Ready   bool   `json:"ready"`
	Reason  string `json:"reason,omitempty"`
	Health  string `json:"health,omitempty"`
	Limited string `json:"rateLimited,omitempty"`
	// LimitedMessage says until when, while something holds calls back.
	LimitedMessage string   `json:"rateLimitedMessage,omitempty"`
	Windows        []Window `json:"windows"`
	// BackoffSeconds is how long the failure backoff or Retry-After still holds.
	BackoffSeconds float64    `json:"backoffSeconds,omitempty"`
	Cost           Cost       `json:"cost"`
	Endpoints      []Endpoint `json:"endpoints,omitempty"`
	// Pool is true for an Ollama pool.
	Pool bool `json:"pool,omitempty"`
	// Lanes are gateway calls ("interactive") and batch items ("batch")
	// over the last minute, side by side; none before the manager reports.
	Lanes []Lane `json:"lanes,omitempty"`
}

// Lane is one lane's use of a provider over the last minute.
type Lane struct {
	Name     string `json:"name"`
	Calls    int64  `json:"callsLastMinute"`
	Tokens   int64  `json:"tokensLastMinute"`
	Refused  int64  `json:"refusedLastMinute,omitempty"`
	InFlight int32  `json:"inFlight"`
	Waiting  int32  `json:"waiting"`
	// Standby are the standby grants lent to gateways (interactive only).
	Standby int32 `json:"standby,omitempty"`
}

// Window is one rolling quota window.
type Window struct {
	Name      string `json:"name"`
	Unit      string `json:"unit"`
	Used      int64  `json:"used"`
	Limit     int64  `json:"limit,omitempty"`
	Unlimited bool   `json:"unlimited,omitempty"`
	// FreesInSeconds is, for a full window, when its next slot frees.
	FreesInSeconds float64 `json:"freesInSeconds,omitempty"`
}

// Cost is spend against alerts and budgets, USD decimal strings.
type Cost struct {
	Today        string `json:"today,omitempty"`
	Month        string `json:"month,omitempty"`
	DailyAlert   string `json:"dailyAlert,omitempty"`
	MonthlyAlert string `json:"monthlyAlert,omitempty"`
	DailyBudget  string `json:"dailyBudget,omitempty"`
	MonthBudget  string `json:"monthlyBudget,omitempty"`
	Alerting     bool   `json:"alerting,omitempty"`
}

// Endpoint is one Ollama pod.
type Endpoint struct {
	Name           string `json:"name"`
	State          string `json:"state"`
	Model          string `json:"model,omitempty"`
	GPUUsedBytes   int64  `json:"gpuMemoryUsedBytes,omitempty"`
	GPUTotalBytes  int64  `json:"gpuMemoryTotalBytes,omitempty"`
	ModelVRAMBytes int64  `json:"vramBytes,omitempty"`
	// PodGPUBytes is what the pod's own processes hold on the GPUs, where
	// the node agent maps them (0: unknown).
	PodGPUBytes int64 `json:"podGPUMemoryBytes,omitempty"`
	// Estimate says the GPU figures are Ollama's (no NVML on the node).
	Estimate bool `json:"estimate,omitempty"`
}

// Batch is one InferenceBatch's progress.
type Batch struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Provider  string `json:"provider"`
	Done      int32  `json:"done"`
	Total     int32  `json:"total"`
	Failed    int32  `json:"failed"`
	// Status is the Progressing reason: Running, why it waits, or how it ended.
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
	// ETASeconds is how long until the estimated completion (0 when none).
	ETASeconds float64 `json:"etaSeconds,omitempty"`
	Finished   bool    `json:"finished,omitempty"`
}

// Build makes the snapshot at now: providers by name, batches unfinished
// first, then by namespace and name.
func Build(now time.Time, providers []llmv1.LLMProvider, batches []llmv1.InferenceBatch) Snapshot {
	s := Snapshot{Time: now.UTC(), Providers: []Provider{}, Batches: []Batch{}}
	for i := range providers {
		s.Providers = append(s.Providers, provider(now, &providers[i]))
	}
	slices.SortFunc(s.Providers, func(a, b Provider) int { return strings.Compare(a.Name, b.Name) })
	for i := range batches {
		s.Batches = append(s.Batches, batch(now, &batches[i]))
	}
	slices.SortFunc(s.Batches, func(a, b Batch) int {
		if a.Finished != b.Finished {
			if a.Finished {
				return 1
			}
			return -1
		}
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
	return s
}

func provider(now time.Time, p *llmv1.LLMProvider) Provider {
	st := p.Status
	out := Provider{Name: p.Name, Type: string(p.Spec.Type), Pool: p.Spec.Ollama != nil}
	if c := meta.FindStatusCondition(st.Conditions, llmv1.ConditionReady); c != nil {
		out.Ready, out.Reason = c.Status == metav1.ConditionTrue, c.Reason
	}
	if c := meta.FindStatusCondition(st.Conditions, llmv1.ConditionDegraded); c != nil {
		out.Health = c.Reason
	}
	if c := meta.FindStatusCondition(st.Conditions, llmv1.ConditionRateLimited); c != nil {
		out.Limited = c.Reason
		if c.Status == metav1.ConditionTrue {
			out.LimitedMessage = c.Message
		}
	}
	freesIn := 0.0
	if st.NextRequestAt != nil && st.NextRequestAt.After(now) {
		freesIn = st.NextRequestAt.Sub(now).Seconds()
	}
	for _, w := range []struct {
		name, unit string
		usage      *llmv1.WindowUsage
	}{{"minute", "requests", st.Usage.Minute}, {"hour", "requests", st.Usage.Hour}, {"day", "requests", st.Usage.Day}, {"minute", "tokens", st.Usage.TokensPerMinute},
		{"day", "tokens", st.Usage.TokensPerDay}, {"minute", "input tokens", st.Usage.InputTokensPerMinute}, {"minute", "output tokens", st.Usage.OutputTokensPerMinute}} {
		if w.usage == nil {
			continue
		}
		win := Window{Name: w.name, Unit: w.unit, Used: w.usage.Used, Limit: w.usage.Limit, Unlimited: w.usage.Summary == llmv1.UnlimitedSummary}
		if !win.Unlimited && win.Limit > 0 && win.Used >= win.Limit {
			win.FreesInSeconds = freesIn
		}
		out.Windows = append(out.Windows, win)
	}
	for _, l := range []struct {
		name  string
		usage *llmv1.LaneUsage
	}{{"interactive", st.Usage.Interactive}, {"batch", st.Usage.Batch}} {
		u := l.usage
		if u == nil && st.Usage.Minute != nil {
			// A running dispatcher's idle lane: its status leaves out a
			// lane whose counts are all zero.
			u = &llmv1.LaneUsage{}
		}
		if u != nil {
			out.Lanes = append(out.Lanes, Lane{Name: l.name, Calls: u.CallsLastMinute, Tokens: u.TokensLastMinute,
				Refused: u.RefusedLastMinute, InFlight: u.InFlight, Waiting: u.Waiting, Standby: u.Standby})
		}
	}
	if st.BackoffUntil != nil && st.BackoffUntil.After(now) {
		out.BackoffSeconds = st.BackoffUntil.Sub(now).Seconds()
	}
	if c := st.Cost; c != nil {
		out.Cost.Today, out.Cost.Month = string(c.Today), string(c.ThisMonth)
	}
	if pc := p.Spec.Cost; pc != nil {
		out.Cost.DailyAlert, out.Cost.MonthlyAlert = string(pc.Alerts.Daily), string(pc.Alerts.Monthly)
		out.Cost.DailyBudget, out.Cost.MonthBudget = string(pc.Budgets.Daily), string(pc.Budgets.Monthly)
	}
	out.Cost.Alerting = meta.IsStatusConditionTrue(st.Conditions, llmv1.ConditionCostAlert)
	for _, e := range st.Endpoints {
		out.Endpoints = append(out.Endpoints, Endpoint{Name: e.Name, State: string(e.State), Model: e.Model,
			GPUUsedBytes: e.GPUMemoryUsedBytes, GPUTotalBytes: e.GPUMemoryTotalBytes, ModelVRAMBytes: e.VRAMBytes,
			PodGPUBytes: e.PodGPUMemoryBytes, Estimate: e.GPUMemorySource == llmv1.GPUSourceOllama})
	}
	return out
}

func batch(now time.Time, b *llmv1.InferenceBatch) Batch {
	st := b.Status
	out := Batch{Namespace: b.Namespace, Name: b.Name, Provider: string(b.Spec.ProviderRef.Name),
		Total: st.Counts.Total, Failed: st.Counts.Failed,
		Done:     st.Counts.Filtered + st.Counts.Succeeded + st.Counts.Failed + st.Counts.Cached,
		Finished: meta.IsStatusConditionTrue(st.Conditions, llmv1.ConditionFinished)}
	if c := meta.FindStatusCondition(st.Conditions, llmv1.ConditionProgressing); c != nil {
		out.Status = c.Reason
		if c.Status != metav1.ConditionTrue {
			out.Message = c.Message
		}
	}
	if out.Status == "" {
		out.Status = "Pending" // the manager has not seen it yet
	}
	if t := st.EstimatedCompletionTime; t != nil && t.After(now) && !out.Finished {
		out.ETASeconds = t.Sub(now).Seconds()
	}
	return out
}
