package dispatch

// divert returns the fallback dispatcher an item should go to, or nil to
// send it here: a prompt longer than this provider takes, an open circuit
// (consecutive failures past the threshold), or a pool with no warm
// endpoint, while a fallback exists.
func (d *Dispatcher) divert(it Item) *Dispatcher {
	tooLong := d.cfg.MaxPromptLength > 0 && len(it.Prompt) > d.cfg.MaxPromptLength
	circuitOpen := d.cfg.CircuitThreshold > 0 && d.limiter.ConsecutiveFailures() >= d.cfg.CircuitThreshold
	if !tooLong && !circuitOpen && !d.noneWarm() {
		return nil
	}
	return d.fallback()
}

// fallback returns the running fallback dispatcher, or nil when there is
// none (not configured, or not running).
func (d *Dispatcher) fallback() *Dispatcher {
	if d.cfg.Fallback == "" || d.lookup == nil {
		return nil
	}
	return d.lookup(d.cfg.Fallback)
}

// noneWarm reports a pool without a warm endpoint.
func (d *Dispatcher) noneWarm() bool {
	return d.cfg.Endpoints != nil && d.cfg.Endpoints.Len() == 0
}

// sendToFallback hands one item to the fallback provider as a batch of its
// own, whose result settles the item in the original batch.
func (d *Dispatcher) sendToFallback(fb *Dispatcher, b *batch, it Item) {
	d.log.V(1).Info("Sending item to fallback", "batch", b.Key, "item", it.ID, "fallback", fb.Name())
	fb.Submit(Batch{
		Key: b.Key + "/" + it.ID + "@" + d.cfg.Name, Namespace: b.Namespace, Priority: b.Priority, Size: 1,
		Params: fallbackParams(b.Params), Items: []Item{it},
		OnResult: func(r Result) {
			fb.Remove(b.Key + "/" + it.ID + "@" + d.cfg.Name)
			d.mu.Lock()
			report := b.OnResult
			if b.removed {
				report = nil
			} else {
				d.finish(b, d.clock.Now())
			}
			d.mu.Unlock()
			d.poke()
			if report != nil {
				report(r)
			}
		},
	})
}

// fallbackParams keep the batch's parameters but not its model, which
// names a model of the primary provider: the fallback uses its own default.
func fallbackParams(p Params) Params {
	p.Model = ""
	return p
}
