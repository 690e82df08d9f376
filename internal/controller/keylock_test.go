package controller

import (
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/types"
)

// TestKeyLocksSerializeOneKeyAndForgetIt: holders of one key never overlap,
// other keys do not wait for it, and no lock stays once all are done.
func TestKeyLocksSerializeOneKeyAndForgetIt(t *testing.T) {
	var k keyLocks
	a, b := types.NamespacedName{Namespace: "ns", Name: "a"}, types.NamespacedName{Namespace: "ns", Name: "b"}
	var wg sync.WaitGroup
	var mu sync.Mutex
	inside, most := 0, 0
	for range 50 {
		wg.Go(func() {
			unlock := k.lock(a)
			mu.Lock()
			inside++
			most = max(most, inside)
			mu.Unlock()
			unlockB := k.lock(b) // another key, taken while a is held: no deadlock
			unlockB()
			mu.Lock()
			inside--
			mu.Unlock()
			unlock()
		})
	}
	wg.Wait()
	if most != 1 {
		t.Fatalf("%d holders of one key at once, want 1", most)
	}
	if n := k.held(); n != 0 {
		t.Fatalf("%d locks kept after every holder is done, want 0", n)
	}
}

// held says how many keys are locked or waited for.
func (k *keyLocks) held() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.locks)
}
