package gateway

import (
	"container/list"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"sync"
	"time"

	"github.com/llmquota/llmquota/internal/provider"
)

// DefaultCacheBytes bounds a replica's cached answers when --cache-max-mib
// is not given.
const DefaultCacheBytes = 32 << 20

// entryOverhead is what an entry costs beyond its strings: the list
// element, the map slot, the Response's other fields.
const entryOverhead = 256

// AnswerCache keeps the answers of calls at temperature 0 of providers
// that enable it (spec.interactive.cache), so an identical call is
// answered again without quota or a provider call. It is bounded in bytes
// (least recently used out first), and each answer lives for its
// provider's TTL. Safe for concurrent use.
type AnswerCache struct {
	mu       sync.Mutex
	maxBytes int
	bytes    int
	order    *list.List // of *cachedAnswer, the most recently used first
	entries  map[string]*list.Element
}

type cachedAnswer struct {
	key     string
	resp    provider.Response
	expires time.Time
	size    int
}

// NewAnswerCache returns a cache of at most maxBytes of answers.
func NewAnswerCache(maxBytes int) *AnswerCache {
	return &AnswerCache{maxBytes: maxBytes, order: list.New(), entries: map[string]*list.Element{}}
}

// get returns the answer stored under key, if it has not expired.
func (c *AnswerCache) get(key string, now time.Time) (*provider.Response, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[key]
	if !ok {
		return nil, false
	}
	e := el.Value.(*cachedAnswer)
	if !now.Before(e.expires) {
		c.remove(el)
		return nil, false
	}
	c.order.MoveToFront(el)
	resp := e.resp
	return &resp, true
}

// put stores an answer under key until expires; an answer larger than
// the whole cache is not stored.
func (c *AnswerCache) put(key string, resp *provider.Response, expires time.Time) {
	size := len(key) + len(resp.Text) + len(resp.Model) + len(resp.FinishReason) + entryOverhead
	if size > c.maxBytes {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[key]; ok {
		c.remove(el)
	}
	c.entries[key] = c.order.PushFront(&cachedAnswer{key: key, resp: *resp, expires: expires, size: size})
	c.bytes += size
	for c.bytes > c.maxBytes {
		c.remove(c.order.Back())
	}
}

func (c *AnswerCache) remove(el *list.Element) {
	e := c.order.Remove(el).(*cachedAnswer)
	delete(c.entries, e.key)
	c.bytes -= e.size
}

// Len is the number of answers held.
func (c *AnswerCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// cacheKey identifies a call by everything that shapes its answer, and by
// its caller's namespace: one namespace never reads another's answers.
func cacheKey(c call, model string) string {
	h := sha256.New()
	parts := []string{c.caller.namespace, c.provider, model, c.req.System, strconv.FormatInt(c.maxTokens, 10)}
	for _, t := range c.req.History {
		parts = append(parts, strconv.FormatBool(t.Assistant), t.Text)
	}
	parts = append(parts, c.req.Prompt)
	for _, p := range parts {
		h.Write([]byte(strconv.Itoa(len(p)))) // lengths first: no two splits of the same bytes collide
		h.Write([]byte{0})
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// zeroTemperature reports whether a call asks for temperature 0, the only
// calls whose answers are reused.
func zeroTemperature(t string) bool {
	v, err := strconv.ParseFloat(t, 64)
	return err == nil && v == 0
}
