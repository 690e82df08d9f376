package ollama

import "time"

// Tracker turns successive /api/ps listings of one server into models with
// a last-use time. Ollama does not say when a model was last used, but it
// moves a model's expires_at to now+keep_alive each time a request ends,
// so a moved expires_at means the model was used since the last look. A
// model seen for the first time counts as used then, so nothing is
// unloaded before it has been watched idle for a whole interval.
type Tracker struct {
	seen map[string]tracked
}

type tracked struct {
	expiresAt time.Time
	lastUsed  time.Time
}

// Observe records a listing taken at now and returns its models. A model
// used within recent (normally one polling period) is Busy: traffic is
// probably still using it.
func (t *Tracker) Observe(now time.Time, running []Running, recent time.Duration) []Model {
	if t.seen == nil {
		t.seen = map[string]tracked{}
	}
	next := make(map[string]tracked, len(running))
	models := make([]Model, 0, len(running))
	for _, r := range running {
		tr, ok := t.seen[r.Name]
		if !ok || !tr.expiresAt.Equal(r.ExpiresAt) {
			tr = tracked{expiresAt: r.ExpiresAt, lastUsed: now}
		}
		next[r.Name] = tr
		models = append(models, Model{Name: r.Name, VRAMBytes: r.VRAMBytes, SizeBytes: r.SizeBytes,
			LastUsed: tr.lastUsed, Busy: now.Sub(tr.lastUsed) < recent})
	}
	t.seen = next // unloaded models are forgotten
	return models
}
