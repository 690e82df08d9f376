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

func TestChildrenFindsAStartedChildByName(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	p, err := Start(filepath.Join(t.TempDir(), "log"), "/bin/sleep", "30")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	kids, err := Children(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if kids["sleep"] != p.Pid() {
		t.Fatalf("children %v: sleep is not pid %d", kids, p.Pid())
	}
	if others, err := Children(p.Pid()); err != nil || len(others) != 0 {
		t.Fatalf("sleep has children %v, %v", others, err)
	}
}
