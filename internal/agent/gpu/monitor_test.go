package gpu

import (
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
	"github.com/go-logr/logr/funcr"
)

// logLines collects what a Monitor logs.
func logLines() (*[]string, func(string, string)) {
	var lines []string
	return &lines, func(prefix, args string) { lines = append(lines, prefix+args) }
}

// TestMonitorWithoutNVMLSaysSoOnce: an agent on a node without a driver
// samples every few seconds; it must say so once, not on every sample.
func TestMonitorWithoutNVMLSaysSoOnce(t *testing.T) {
	lines, sink := logLines()
	s := dgxh100.New()
	s.InitFunc = func() nvml.Return { return nvml.ERROR_DRIVER_NOT_LOADED }
	m := NewMonitor(func() (*Reader, error) { return Open(s) }, funcr.New(sink, funcr.Options{}))
	for range 50 {
		if devs, ok := m.Sample(); ok || devs != nil {
			t.Fatalf("sample without NVML: %v %v", devs, ok)
		}
	}
	if len(*lines) != 1 || !strings.Contains((*lines)[0], "NVML is not available") {
		t.Fatalf("logged %q, want one line saying NVML is not available", *lines)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestMonitorDeviceErrorsOncePerError: a device that stops answering is
// logged once, and its recovery once.
func TestMonitorDeviceErrorsOncePerError(t *testing.T) {
	lines, sink := logLines()
	broken := false
	s := h100(t, func(i int, d *server.Device) {
		if i == 3 {
			ok := d.GetMemoryInfo_v2Func
			d.GetMemoryInfo_v2Func = func() (nvml.Memory_v2, nvml.Return) {
				if broken {
					return nvml.Memory_v2{}, nvml.ERROR_GPU_IS_LOST
				}
				return ok()
			}
			d.GetMemoryInfoFunc = func() (nvml.Memory, nvml.Return) { return nvml.Memory{}, nvml.ERROR_GPU_IS_LOST }
		}
	})
	m := NewMonitor(func() (*Reader, error) { return Open(s) }, funcr.New(sink, funcr.Options{}))
	if devs, ok := m.Sample(); !ok || len(devs) != 8 {
		t.Fatalf("healthy sample: %d devices, ok %v", len(devs), ok)
	}
	broken = true
	for range 20 {
		if _, ok := m.Sample(); ok {
			t.Fatal("sample with a lost GPU reported ok")
		}
	}
	broken = false
	if _, ok := m.Sample(); !ok {
		t.Fatal("recovered sample not ok")
	}
	if len(*lines) != 3 || !strings.Contains((*lines)[1], "device 3") || !strings.Contains((*lines)[2], "works again") {
		t.Fatalf("logged %q, want: opened, one error naming device 3, recovered", *lines)
	}
}

func TestTotalsAndOverBy(t *testing.T) {
	r, err := Open(h100(t, nil)) // device i uses (i+1)*8 of 80 GiB
	if err != nil {
		t.Fatal(err)
	}
	devs, _ := r.Devices()
	used, total := Totals(devs)
	if used != 288*gib || total != 640*gib {
		t.Fatalf("totals %d/%d GiB, want 288/640", used/gib, total/gib)
	}
	// Over 70% (56 GiB): device 6 sits at the mark (0 over), device 7 is 8 GiB over.
	if got := OverBy(devs, 70); got != 8*gib {
		t.Fatalf("over 70%% by %d GiB, want 8", got/gib)
	}
	if got := OverBy(devs, 95); got != 0 {
		t.Fatalf("over 95%% by %d, want 0", got)
	}
}
