package authority

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

// fakeAuthority grants every acquire and as many spares as asked, up to
// limit grants in all, and records what it was asked. With gate set, each
// acquire waits for it to be closed.
type fakeAuthority struct {
	mu       sync.Mutex
	asked    []AcquireRequest
	given    int
	limit    int
	useMilli int64
	gate     chan struct{}
}

func (f *fakeAuthority) Acquire(_ context.Context, req AcquireRequest) (AcquireResponse, error) {
	if f.gate != nil {
		<-f.gate
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, req)
	if f.given >= f.limit {
		return AcquireResponse{Reason: "Window", Window: "minute"}, nil
	}
	f.given++
	resp := AcquireResponse{Grant: fmt.Sprintf("g%d", f.given), UseMillis: f.useMilli}
	for range req.Prefetch {
		if f.given >= f.limit {
			break
		}
		f.given++
		resp.Spares = append(resp.Spares, Spare{Grant: fmt.Sprintf("g%d", f.given)})
	}
	return resp, nil
}

func (f *fakeAuthority) requests() []AcquireRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]AcquireRequest(nil), f.asked...)
}

// returns collects what Spares gave back.
type returns struct {
	mu    sync.Mutex
	grant []string
}

func (r *returns) add(req ReleaseRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if req.Sent {
		panic("a spare given back as sent")
	}
	r.grant = append(r.grant, req.Grant)
}

func (r *returns) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.grant)
}

var call = AcquireRequest{Provider: "p", Namespace: "team-a", Model: "m", InputChars: 100, MaxTokens: 64, MaxWaitMillis: 1000}

// TestSparesServeTheNextCalls: the first call learns that the provider
// gives spares; the next asks for spares for as many calls as came in the
// period so far, without waiting for quota; the calls after it are served
// from them with no request, until they run out; a larger call does not
// take a spare granted for a smaller one; spares not sent within their use
// are given back unsent, and never serve a call.
func TestSparesServeTheNextCalls(t *testing.T) {
	fc := clocktesting.NewFakeClock(time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC))
	auth, back := &fakeAuthority{limit: 100, useMilli: 125}, &returns{}
	s := &Spares{Quota: auth, Return: back.add, Clock: fc}
	ctx := context.Background()
	// Requests to the authority after each call: 1 learns, 2 asks for 1
	// spare, 3 uses it, 4 asks for 3, 5 to 7 use them.
	for i, want := range []int{1, 2, 2, 3, 3, 3, 3} {
		resp, err := s.Acquire(ctx, call)
		if err != nil || resp.Grant == "" || len(resp.Spares) != 0 {
			t.Fatalf("call %d: %+v %v", i+1, resp, err)
		}
		if n := len(auth.requests()); n != want {
			t.Fatalf("after call %d: %d requests, want %d", i+1, n, want)
		}
	}
	asked := auth.requests()
	if asked[0].Prefetch != 0 || asked[1].Prefetch != 1 || asked[2].Prefetch != 3 || asked[1].MaxWaitMillis != 0 || asked[2].MaxWaitMillis != 0 {
		t.Fatalf("asked %+v; want a plain acquire, then fetches of 1 and 3 spares that do not wait", asked)
	}
	if st := s.Stats(); st.Used != 4 || st.Returned != 0 {
		t.Fatalf("stats %+v, want 4 spares used", st)
	}

	big := call
	big.InputChars = 200
	if _, err := s.Acquire(ctx, big); err != nil {
		t.Fatal(err)
	}
	asked = auth.requests()
	if len(asked) != 4 || asked[3].InputChars != 200 || asked[3].Prefetch == 0 {
		t.Fatalf("the larger call was served from a smaller call's spare: %+v", asked)
	}
	fc.Step(125 * time.Millisecond)
	s.sweep(fc.Now())
	if st := s.Stats(); int(st.Returned) != asked[3].Prefetch || back.count() != asked[3].Prefetch {
		t.Fatalf("spares past their use: stats %+v, %d given back, want the %d of the larger call", st, back.count(), asked[3].Prefetch)
	}
	if _, err := s.Acquire(ctx, call); err != nil {
		t.Fatal(err)
	}
	if len(auth.requests()) != 5 {
		t.Fatal("a call was served from a spare past its use")
	}
}

// TestSparesServeABurstWithFewRequests: 50 calls at once, while the
// acquire of the first is in flight, wait for it and take its spares; the
// authority is asked a few times, not 50, and never gives more than its
// limit of 30, so 20 calls are refused with its answer.
func TestSparesServeABurstWithFewRequests(t *testing.T) {
	auth, back := &fakeAuthority{limit: 30, useMilli: 125}, &returns{}
	s := &Spares{Quota: auth, Return: back.add}
	ctx := context.Background()
	if _, err := s.Acquire(ctx, call); err != nil { // learns that spares are given
		t.Fatal(err)
	}
	auth.gate = make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	granted, refused := 0, 0
	for range 50 {
		wg.Go(func() {
			c := call
			c.MaxWaitMillis = 0
			resp, err := s.Acquire(ctx, c)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				t.Error(err)
			case resp.Grant != "":
				granted++
			default:
				refused++
			}
		})
	}
	for s.waitingFor(call) < 49 {
		time.Sleep(time.Millisecond) // until 49 calls wait for the first one's acquire
	}
	close(auth.gate)
	wg.Wait()
	if granted != 29 || refused != 21 {
		t.Fatalf("granted %d, refused %d; want 29 and 21 (30 in all, one before the burst)", granted, refused)
	}
	if n := len(auth.requests()); n > 1+21+2 {
		t.Fatalf("%d requests to the authority for a burst of 50 with 29 spares", n)
	}
	if back.count() != 0 {
		t.Fatalf("%d spares given back while calls waited for them", back.count())
	}
}

// waitingFor is how many calls wait for the acquire in flight of req's set.
func (s *Spares) waitingFor(req AcquireRequest) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	set := s.sets[spareKey{req.Provider, req.Namespace, req.Model}]
	if set == nil {
		return 0
	}
	return set.waiting
}

// TestSparesRefusedFetchWaitsAlone: an acquire that asks for spares does
// not wait for quota; when it is refused and its caller may wait, the call
// asks again alone, with what is left of its wait.
func TestSparesRefusedFetchWaitsAlone(t *testing.T) {
	auth, back := &fakeAuthority{limit: 1, useMilli: 125}, &returns{}
	s := &Spares{Quota: auth, Return: back.add}
	ctx := context.Background()
	if _, err := s.Acquire(ctx, call); err != nil {
		t.Fatal(err)
	}
	resp, err := s.Acquire(ctx, call)
	if err != nil || resp.Grant != "" {
		t.Fatalf("%+v %v, want a refusal", resp, err)
	}
	asked := auth.requests()
	if len(asked) != 3 || asked[1].MaxWaitMillis != 0 || asked[1].Prefetch == 0 || asked[2].Prefetch != 0 || asked[2].MaxWaitMillis == 0 {
		t.Fatalf("asked %+v; want a fetch that does not wait, then the call alone with its wait", asked)
	}
}

// TestSparesGivenBackWhenStopped: Run gives back every spare held when
// its context ends; with Max negative no spare is asked for.
func TestSparesGivenBackWhenStopped(t *testing.T) {
	auth, back := &fakeAuthority{limit: 100, useMilli: 60_000}, &returns{}
	s := &Spares{Quota: auth, Return: back.add}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	for range 2 {
		if _, err := s.Acquire(context.Background(), call); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	<-done
	if back.count() != 1 { // the second call asked for one spare
		t.Fatalf("%d spares given back when stopped, want the one held", back.count())
	}

	none := &Spares{Quota: &fakeAuthority{limit: 100, useMilli: 125}, Return: back.add, Max: -1}
	for range 3 {
		if _, err := none.Acquire(context.Background(), call); err != nil {
			t.Fatal(err)
		}
	}
	for _, req := range none.Quota.(*fakeAuthority).requests() {
		if req.Prefetch != 0 {
			t.Fatalf("asked for %d spares with Max -1", req.Prefetch)
		}
	}
}

// TestSparesForgetIdleSets: callers name the model, so a set per model ever
// named would grow without bound. A set that holds nothing is forgotten
// idleSet after its last call, not before; one still holding spares gives
// them back first; a set forgotten serves its next call as its first.
func TestSparesForgetIdleSets(t *testing.T) {
	fc := clocktesting.NewFakeClock(time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC))
	auth, back := &fakeAuthority{limit: 1000, useMilli: 125}, &returns{}
	s := &Spares{Quota: auth, Return: back.add, Clock: fc}
	ctx := context.Background()
	for i := range 100 {
		c := call
		c.Model = fmt.Sprintf("invented-%d", i)
		if _, err := s.Acquire(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 { // the second asks for a spare, held by the set
		if _, err := s.Acquire(ctx, call); err != nil {
			t.Fatal(err)
		}
	}
	if n := setCount(s); n != 101 {
		t.Fatalf("%d sets after calls of 101 models, want 101", n)
	}
	fc.Step(idleSet - time.Millisecond)
	s.sweep(fc.Now())
	if n := setCount(s); n != 101 || back.count() != 1 {
		t.Fatalf("just under idleSet: %d sets, %d spares given back; want 101 and the one past its use", n, back.count())
	}
	fc.Step(time.Millisecond)
	s.sweep(fc.Now())
	if n := setCount(s); n != 0 {
		t.Fatalf("%d sets idle for idleSet and holding nothing, want none", n)
	}
	asked := len(auth.requests())
	if _, err := s.Acquire(ctx, call); err != nil || len(auth.requests()) != asked+1 || auth.requests()[asked].Prefetch != 0 {
		t.Fatalf("a forgotten set's next call: %v, asked %+v; want one acquire without spares, as a first call", err, auth.requests()[asked:])
	}
}

// setCount is how many sets of provider, namespace and model s holds.
func setCount(s *Spares) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sets)
}
