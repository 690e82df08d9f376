package dashboard

import (
	"fmt"
	"math"
	"strings"

	"charm.land/lipgloss/v2"
)

// barWidth is the width of a window's or a batch's bar, in cells.
const barWidth = 24

// Styles colour the dashboard. The colours are always written; the
// command's output goes through a colorprofile writer that keeps what the
// terminal shows and strips them for a pipe or a test.
type Styles struct {
	Title, Header, Good, Warn, Bad, Dim lipgloss.Style
}

// NewStyles makes the dashboard's styles.
func NewStyles() Styles {
	return Styles{
		Title:  lipgloss.NewStyle().Bold(true),
		Header: lipgloss.NewStyle().Bold(true).Underline(true),
		Good:   lipgloss.NewStyle().Foreground(lipgloss.Green),
		Warn:   lipgloss.NewStyle().Foreground(lipgloss.Yellow),
		Bad:    lipgloss.NewStyle().Foreground(lipgloss.Red).Bold(true),
		Dim:    lipgloss.NewStyle().Faint(true),
	}
}

// Render draws a snapshot as text lines, at most width cells wide where
// messages would run longer.
func Render(s Snapshot, st Styles, width int) string {
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	line("%s", st.Title.Render(fmt.Sprintf("llmquota top · %s · %s · %s",
		s.Time.Format("2006-01-02 15:04:05 MST"), counted(len(s.Providers), "provider"), counted(len(s.Batches), "batch"))))
	line("")
	line("%s", st.Header.Render("PROVIDERS"))
	if len(s.Providers) == 0 {
		line("  %s", st.Dim.Render("none"))
	}
	for _, p := range s.Providers {
		renderProvider(&b, p, st, width)
	}
	line("")
	line("%s", st.Header.Render("BATCHES"))
	if len(s.Batches) == 0 {
		line("  %s", st.Dim.Render("none"))
		return b.String()
	}
	rows := [][]string{{"NAMESPACE", "NAME", "PROVIDER", "PROGRESS", "", "FAILED", "ETA", "STATUS"}}
	for _, x := range s.Batches {
		eta := "-"
		if x.ETASeconds > 0 {
			eta = "in " + Human(x.ETASeconds)
		}
		failed := fmt.Sprint(x.Failed)
		if x.Failed > 0 {
			failed = st.Bad.Render(failed)
		}
		rows = append(rows, []string{x.Namespace, x.Name, x.Provider, statusStyle(x.Status, st).Render(bar(int64(x.Done), int64(x.Total))),
			fmt.Sprintf("%d/%d", x.Done, x.Total), failed, eta, statusStyle(x.Status, st).Render(x.Status)})
	}
	b.WriteString(table(rows, "  "))
	for _, x := range s.Batches {
		if x.Message != "" && !x.Finished && x.Status != "Running" {
			line("  %s", st.Dim.Render(clip(x.Namespace+"/"+x.Name+": "+x.Message, width-2)))
		}
	}
	return b.String()
}

// renderLanes shows gateway calls and batch items side by side.
func renderLanes(b *strings.Builder, lanes []Lane, st Styles) {
	if len(lanes) == 0 {
		return
	}
	rows := [][]string{{st.Dim.Render("last minute"), st.Dim.Render("calls"), st.Dim.Render("tokens"), st.Dim.Render("in flight"),
		st.Dim.Render("waiting"), st.Dim.Render("refused")}}
	for _, l := range lanes {
		refused := "-"
		if l.Name == "interactive" {
			refused = fmt.Sprint(l.Refused)
			if l.Refused > 0 {
				refused = st.Warn.Render(refused)
			}
		}
		inFlight := fmt.Sprint(l.InFlight)
		if l.Standby > 0 { // lent to the gateways for an election, sent or not
			inFlight += fmt.Sprintf(" (+%d standby)", l.Standby)
		}
		rows = append(rows, []string{l.Name, fmt.Sprint(l.Calls), fmt.Sprint(l.Tokens), inFlight, fmt.Sprint(l.Waiting), refused})
	}
	b.WriteString(table(rows, "    "))
}

func renderProvider(b *strings.Builder, p Provider, st Styles, width int) {
	ready := st.Good.Render("Ready")
	if !p.Ready {
		ready = st.Bad.Render("NotReady " + p.Reason)
	}
	health := p.Health
	if health != "" && health != "Healthy" {
		health = st.Bad.Render(health)
	}
	limited := p.Limited
	if p.LimitedMessage != "" {
		limited = st.Warn.Render(limited)
	}
	fmt.Fprintf(b, "  %s (%s)  %s\n", st.Title.Render(p.Name), p.Type, strings.Join(nonEmpty(ready, health, limited), " · "))
	var rows [][]string
	for _, w := range p.Windows {
		if w.Unlimited {
			rows = append(rows, []string{w.Name, w.Unit, st.Dim.Render("unlimited"), "", ""})
			continue
		}
		note := fmt.Sprintf("%d free", max(0, w.Limit-w.Used))
		if w.Used >= w.Limit {
			note = st.Warn.Render("full")
			if w.FreesInSeconds > 0 {
				note = st.Warn.Render("full, a slot frees in " + Human(w.FreesInSeconds))
			}
		}
		rows = append(rows, []string{w.Name, w.Unit, fill(w.Used, w.Limit, st).Render(bar(w.Used, w.Limit)), fmt.Sprintf("%d/%d", w.Used, w.Limit), note})
	}
	if len(rows) > 0 {
		b.WriteString(table(rows, "    "))
	}
	renderLanes(b, p.Lanes, st)
	if p.BackoffSeconds > 0 {
		fmt.Fprintf(b, "    %s\n", st.Warn.Render(fmt.Sprintf("backing off: %s left", Human(p.BackoffSeconds))))
	}
	if p.LimitedMessage != "" {
		fmt.Fprintf(b, "    %s\n", st.Dim.Render(clip(p.Limited+": "+p.LimitedMessage, width-4)))
	}
	if c := p.Cost; c.Today != "" || c.DailyAlert != "" || c.DailyBudget != "" {
		cost := fmt.Sprintf("cost today $%s%s · month $%s%s", or(c.Today, "0"), limits(c.DailyAlert, c.DailyBudget), or(c.Month, "0"), limits(c.MonthlyAlert, c.MonthBudget))
		if c.Alerting {
			cost = st.Bad.Render(cost + " · past its alert")
		}
		fmt.Fprintf(b, "    %s\n", cost)
	}
	if p.Pool {
		warm := 0
		for _, e := range p.Endpoints {
			if e.State == "Warm" {
				warm++
			}
		}
		fmt.Fprintf(b, "    endpoints %d/%d warm\n", warm, len(p.Endpoints))
		var rows [][]string
		for _, e := range p.Endpoints {
			gpu := "-"
			switch {
			case e.GPUUsedBytes > 0 && (e.Estimate || e.GPUTotalBytes == 0): // no NVML on the node: Ollama's own figure
				gpu = "GPU " + gib(e.GPUUsedBytes) + " used (estimate, no NVML)"
			case e.GPUTotalBytes > 0:
				gpu = "GPU " + fill(e.GPUUsedBytes, e.GPUTotalBytes, st).Render(bar(e.GPUUsedBytes, e.GPUTotalBytes)) + " " + gib(e.GPUUsedBytes) + " / " + gib(e.GPUTotalBytes)
			}
			model := "-"
			if e.ModelVRAMBytes > 0 {
				model = "model " + gib(e.ModelVRAMBytes)
			}
			if e.PodGPUBytes > 0 {
				gpu += " · this pod " + gib(e.PodGPUBytes)
			}
			rows = append(rows, []string{e.Name, statusStyle(e.State, st).Render(e.State), or(e.Model, "-"), model, gpu})
		}
		if len(rows) > 0 {
			b.WriteString(table(rows, "      "))
		}
	}
}

// statusStyle colours a batch or endpoint state: done and warm green,
// failures red, waits yellow.
func statusStyle(s string, st Styles) lipgloss.Style {
	switch s {
	case "Succeeded", "Running", "Warm":
		return st.Good
	case "ItemsFailed", "DeadlineExceeded", "Failed", "InvalidItems", "OutputUnavailable", "ProviderNotFound", "NoModel":
		return st.Bad
	}
	return st.Warn
}

func limits(alert, budget string) string {
	var parts []string
	if alert != "" {
		parts = append(parts, "alert $"+alert)
	}
	if budget != "" {
		parts = append(parts, "budget $"+budget)
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// fill colours a gauge: yellow from 90% full, green below.
func fill(used, limit int64, st Styles) lipgloss.Style {
	if limit > 0 && used*10 >= limit*9 {
		return st.Warn
	}
	return st.Good
}

// bar draws used of limit in barWidth cells.
func bar(used, limit int64) string {
	filled := 0
	if limit > 0 {
		filled = int(math.Round(float64(min(used, limit)) / float64(limit) * barWidth))
	}
	return strings.Repeat("█", filled) + strings.Repeat("░", barWidth-filled)
}

// table left-aligns rows in columns, measuring cells as they show
// (colour codes take no room).
func table(rows [][]string, indent string) string {
	widths := map[int]int{}
	for _, r := range rows {
		for i, c := range r {
			widths[i] = max(widths[i], lipgloss.Width(c))
		}
	}
	var b strings.Builder
	for _, r := range rows {
		var l strings.Builder
		l.WriteString(indent)
		for i, c := range r {
			l.WriteString(c)
			if i < len(r)-1 {
				l.WriteString(strings.Repeat(" ", widths[i]-lipgloss.Width(c)+2))
			}
		}
		b.WriteString(strings.TrimRight(l.String(), " ") + "\n")
	}
	return b.String()
}

// Human prints seconds as a short duration: 45s, 3m12s, 1h04m, 2d03h.
func Human(seconds float64) string {
	s := int64(math.Ceil(seconds))
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh%02dm", s/3600, s%3600/60)
	}
	return fmt.Sprintf("%dd%02dh", s/86400, s%86400/3600)
}

func gib(b int64) string { return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30)) }

func clip(s string, width int) string {
	if width < 10 || lipgloss.Width(s) <= width {
		return s
	}
	r := []rune(s)
	return string(r[:max(0, width-1)]) + "…"
}

func or(s, fallback string) string {
	if s == "" {
		return fallback
	}
	return s
}

func nonEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// counted is n of a noun, "1 provider", "2 batches".
func counted(n int, noun string) string {
	switch {
	case n == 1:
		return "1 " + noun
	case strings.HasSuffix(noun, "h"):
		return fmt.Sprintf("%d %ses", n, noun)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
