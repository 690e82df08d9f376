package gateway

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	authnv1 "k8s.io/api/authentication/v1"
	"k8s.io/client-go/tools/events"
)

// TestDenialsAreRateLimited: a caller refused in a loop gets at most the
// burst of Events (at a refill too slow to add one during the test), each
// naming the provider and why; a caller that is not a ServiceAccount gets
// none.
func TestDenialsAreRateLimited(t *testing.T) {
	rec := events.NewFakeRecorder(100)
	d := NewDenials(rec, 0.0001, 3)
	sa := caller{user: authnv1.UserInfo{Username: "system:serviceaccount:team-c:ops", UID: "u-1"}, namespace: "team-c"}
	for i := range 30 {
		d.denied(sa, fmt.Sprintf("p%d", i), fail(http.StatusForbidden, "permission_denied", "not selected"))
	}
	d.denied(caller{user: authnv1.UserInfo{Username: "alice"}}, "p0", fail(http.StatusForbidden, "permission_denied", "no"))
	close(rec.Events)
	var got []string
	for e := range rec.Events {
		got = append(got, e)
	}
	if len(got) != 3 {
		t.Fatalf("%d Events for 31 refusals, want the burst of 3: %q", len(got), got)
	}
	for i, e := range got {
		if want := fmt.Sprintf("Warning %s provider p%d: not selected", ReasonProviderAccessDenied, i); !strings.HasPrefix(e, want) {
			t.Errorf("Event %d = %q, want %q", i, e, want)
		}
	}
	var none *Denials
	none.denied(sa, "p", fail(http.StatusForbidden, "permission_denied", "x")) // a gateway without Events does nothing
}
