package controller

import (
	"sync"

	"k8s.io/apimachinery/pkg/types"
)

// keyLocks serializes the work on one batch between the reconcile queue,
// which never runs a key twice at once, and the runs' result writers,
// which publish progress outside the queue (batchrun.Runtime.PublishWith).
// A key's lock is dropped when nobody holds or waits for it.
type keyLocks struct {
	mu    sync.Mutex
	locks map[types.NamespacedName]*keyLock
}

type keyLock struct {
	sync.Mutex
	users int // holding or waiting
}

// lock locks key and returns its unlock.
func (k *keyLocks) lock(key types.NamespacedName) (unlock func()) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[types.NamespacedName]*keyLock{}
	}
	l := k.locks[key]
	if l == nil {
		l = &keyLock{}
		k.locks[key] = l
	}
	l.users++
	k.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		k.mu.Lock()
		if l.users--; l.users == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}
