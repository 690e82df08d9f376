// Package kubeauth authenticates bearer tokens with the API server's
// TokenReview and authorizes their users with SubjectAccessReview, caching
// both answers for a short, bounded time: RBAC stays the policy, and the
// API server sees one review per caller and TTL, not one per request.
package kubeauth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// DefaultTTL is how long an answer is reused: a revoked token, or a
// RoleBinding removed, takes effect at most this much later.
const DefaultTTL = 10 * time.Second

// maxEntries bounds each cache; when full, expired answers are dropped,
// and if none had expired the cache starts empty again.
const maxEntries = 8192

// ErrUnauthenticated is returned for a token the API server does not accept.
var ErrUnauthenticated = errors.New("the token was not accepted")

// Reviewer asks the API server who a token belongs to and what its user
// may do.
type Reviewer struct {
	// Client creates the reviews (it needs create on tokenreviews and
	// subjectaccessreviews).
	Client client.Client
	// Audiences a token must be issued for; empty accepts the API
	// server's own.
	Audiences []string
	// TTL of the cached answers; DefaultTTL when zero.
	TTL time.Duration
	// Clock is the time source; the real clock when nil.
	Clock clock.PassiveClock

	// flight makes concurrent first calls with one token share one review.
	flight singleflight.Group

	mu    sync.Mutex
	users map[[32]byte]userEntry
	rules map[ruleKey]ruleEntry
}

// ruleKey is who asks for what: comparable, so a cached answer is found
// without formatting a key on every call.
type ruleKey struct {
	user, groups string
	access       Access
}

type userEntry struct {
	user    authnv1.UserInfo
	err     error
	expires time.Time
}

type ruleEntry struct {
	allowed bool
	expires time.Time
}

// Access is what a user asks to do: a verb on a resource of a group,
// optionally one named object of it, optionally in a namespace.
type Access struct {
	Verb, Group, Resource, Name, Namespace string
}

func (r *Reviewer) now() time.Time {
	if r.Clock == nil {
		return time.Now()
	}
	return r.Clock.Now()
}

func (r *Reviewer) ttl() time.Duration {
	if r.TTL <= 0 {
		return DefaultTTL
	}
	return r.TTL
}

// Authenticate returns the user a token belongs to, or ErrUnauthenticated
// (wrapped with the API server's reason) when it is not accepted. A refusal
// is cached like an acceptance, so a caller retrying a bad token does not
// reach the API server each time.
func (r *Reviewer) Authenticate(ctx context.Context, token string) (authnv1.UserInfo, error) {
	if token == "" {
		return authnv1.UserInfo{}, fmt.Errorf("%w: no bearer token", ErrUnauthenticated)
	}
	key := sha256.Sum256([]byte(token))
	now := r.now()
	r.mu.Lock()
	if e, ok := r.users[key]; ok && now.Before(e.expires) {
		r.mu.Unlock()
		return e.user, e.err
	}
	r.mu.Unlock()
	v, err, _ := r.flight.Do(string(key[:]), func() (any, error) { return r.review(ctx, token, key, now) })
	if err != nil {
		return authnv1.UserInfo{}, err
	}
	e := v.(userEntry)
	return e.user, e.err
}

// review asks the API server about a token and caches the answer.
func (r *Reviewer) review(ctx context.Context, token string, key [32]byte, now time.Time) (userEntry, error) {
	review := &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: token, Audiences: r.Audiences}}
	if err := r.Client.Create(ctx, review); err != nil {
		return userEntry{}, fmt.Errorf("reviewing the token: %w", err) // not cached: the API server may be back soon
	}
	e := userEntry{user: review.Status.User, expires: now.Add(r.ttl())}
	if !review.Status.Authenticated {
		reason := review.Status.Error
		if reason == "" {
			reason = "not authenticated"
		}
		e = userEntry{err: fmt.Errorf("%w: %s", ErrUnauthenticated, reason), expires: e.expires}
	}
	r.mu.Lock()
	if r.users == nil || len(r.users) >= maxEntries {
		r.users = pruned(r.users, now, func(e userEntry) time.Time { return e.expires })
	}
	r.users[key] = e
	r.mu.Unlock()
	return e, nil
}

// Allowed reports whether user may perform access, by a SubjectAccessReview.
func (r *Reviewer) Allowed(ctx context.Context, user authnv1.UserInfo, access Access) (bool, error) {
	key := ruleKey{user: user.Username, groups: strings.Join(user.Groups, "\x00"), access: access}
	now := r.now()
	r.mu.Lock()
	if e, ok := r.rules[key]; ok && now.Before(e.expires) {
		r.mu.Unlock()
		return e.allowed, nil
	}
	r.mu.Unlock()

	extra := map[string]authzv1.ExtraValue{}
	for k, v := range user.Extra {
		extra[k] = authzv1.ExtraValue(v)
	}
	sar := &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
		User: user.Username, UID: user.UID, Groups: user.Groups, Extra: extra,
		ResourceAttributes: &authzv1.ResourceAttributes{
			Verb: access.Verb, Group: access.Group, Resource: access.Resource, Name: access.Name, Namespace: access.Namespace,
		},
	}}
	if err := r.Client.Create(ctx, sar); err != nil {
		return false, fmt.Errorf("reviewing access: %w", err)
	}
	r.mu.Lock()
	if r.rules == nil || len(r.rules) >= maxEntries {
		r.rules = pruned(r.rules, now, func(e ruleEntry) time.Time { return e.expires })
	}
	r.rules[key] = ruleEntry{allowed: sar.Status.Allowed, expires: now.Add(r.ttl())}
	r.mu.Unlock()
	return sar.Status.Allowed, nil
}

// pruned drops a cache's expired entries; if none had, it starts a new one.
func pruned[K comparable, V any](m map[K]V, now time.Time, expires func(V) time.Time) map[K]V {
	if m == nil {
		return map[K]V{}
	}
	for k, v := range m {
		if !now.Before(expires(v)) {
			delete(m, k)
		}
	}
	if len(m) >= maxEntries {
		return map[K]V{}
	}
	return m
}

// ServiceAccount returns the namespace and name of a ServiceAccount user
// ("system:serviceaccount:<ns>:<name>"); ok is false for other users.
func ServiceAccount(user authnv1.UserInfo) (namespace, name string, ok bool) {
	namespace, name, err := serviceaccount.SplitUsername(user.Username)
	return namespace, name, err == nil
}
