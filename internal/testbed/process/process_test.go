package process

import (
	"os"
	"path/filepath"
	"testing"
)

func TestStartUsageStop(t *testing.T) {
	p, err := Start(filepath.Join(t.TempDir(), "log"), "/bin/sleep", "30")
	if err != nil {
		t.Fatal(err)
	}
	u, err := UsageOf(p.Pid())
	if err != nil || u.PeakRSS <= 0 {
		t.Fatalf("usage %+v, %v", u, err)
	}
	p.Stop()
	p.Stop()
	if _, err := os.Stat(filepath.Join("/proc", "self")); err != nil {
		t.Skip("no /proc")
	}
	if _, err := UsageOf(p.Pid()); err == nil {
		t.Fatal("a stopped process still has a /proc entry")
	}
}
