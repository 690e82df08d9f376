package gpu

import (
	"errors"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
)

const gib = 1 << 30

// h100 returns go-nvml's DGX H100 mock (8 GPUs) with each device reporting
// memory v2, utilisation and one process; tweak changes device i.
func h100(t *testing.T, tweak func(i int, d *server.Device)) *server.Server {
	t.Helper()
	s := dgxh100.New()
	for i, nd := range s.Devices {
		d := nd.(*server.Device)
		used := uint64(i+1) * 8 * gib
		d.GetMemoryInfo_v2Func = func() (nvml.Memory_v2, nvml.Return) {
			return nvml.Memory_v2{Total: 80 * gib, Reserved: gib / 2, Used: used, Free: 80*gib - used - gib/2}, nvml.SUCCESS
		}
		d.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) {
			return nvml.Utilization{Gpu: uint32(10 * i), Memory: 5}, nvml.SUCCESS
		}
		d.GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) {
			return []nvml.ProcessInfo{{Pid: uint32(1000 + i), UsedGpuMemory: used - gib}}, nvml.SUCCESS
		}
		if tweak != nil {
			tweak(i, d)
		}
	}
	return s
}

func TestDevicesFromTheDGXH100Mock(t *testing.T) {
	r, err := Open(h100(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Close() }()
	devs, err := r.Devices()
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 8 {
		t.Fatalf("%d devices, want the DGX H100's 8", len(devs))
	}
	d := devs[2]
	want := Device{Index: 2, UUID: d.UUID, Name: d.Name, TotalBytes: 80 * gib, UsedBytes: 24 * gib, ReservedBytes: gib / 2,
		FreeBytes: 80*gib - 24*gib - gib/2, MemoryV2: true, UtilizationPercent: 20}
	if d.UUID == "" || d.Name == "" {
		t.Fatalf("device without UUID or name: %+v", d)
	}
	if d.TotalBytes != want.TotalBytes || d.UsedBytes != want.UsedBytes || d.FreeBytes != want.FreeBytes ||
		d.ReservedBytes != want.ReservedBytes || !d.MemoryV2 || d.UtilizationPercent != 20 {
		t.Fatalf("device 2: %+v, want %+v", d, want)
	}
	if len(d.Processes) != 1 || d.Processes[0] != (Process{PID: 1002, UsedBytes: 23 * gib}) {
		t.Fatalf("processes %+v", d.Processes)
	}
	if p := d.UsedPercent(); p != 30 {
		t.Fatalf("used %v%%, want 30", p)
	}
}

func TestFallsBackToMemoryInfoV1(t *testing.T) {
	s := h100(t, func(_ int, d *server.Device) {
		d.GetMemoryInfo_v2Func = func() (nvml.Memory_v2, nvml.Return) { return nvml.Memory_v2{}, nvml.ERROR_NOT_SUPPORTED }
		d.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) { return nvml.Utilization{}, nvml.ERROR_NOT_SUPPORTED }
		d.GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) { return nil, nvml.ERROR_NO_PERMISSION }
	})
	r, err := Open(s)
	if err != nil {
		t.Fatal(err)
	}
	devs, err := r.Devices()
	if err != nil {
		t.Fatal(err)
	}
	d := devs[0]
	// The mock's own GetMemoryInfo reports the H100 SXM5 80GB's memory.
	if d.MemoryV2 || d.TotalBytes == 0 || d.ReservedBytes != 0 || d.UtilizationPercent != -1 || d.Processes != nil {
		t.Fatalf("v1 fallback: %+v", d)
	}
}

func TestInitFailureIsNoNVML(t *testing.T) {
	s := dgxh100.New()
	s.InitFunc = func() nvml.Return { return nvml.ERROR_LIBRARY_NOT_FOUND }
	if _, err := Open(s); !errors.Is(err, ErrNoNVML) {
		t.Fatalf("got %v, want ErrNoNVML", err)
	}
}

// TestRealLibraryWithoutDriver runs the real go-nvml binding: on a machine
// without an NVIDIA driver (CI, developers) it must fail with ErrNoNVML,
// not crash; on a GPU machine it must read the devices.
func TestRealLibraryWithoutDriver(t *testing.T) {
	r, err := Open(nvml.New())
	if errors.Is(err, ErrNoNVML) {
		return // the expected path on a machine without a GPU
	}
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	defer func() { _ = r.Close() }()
	devs, err := r.Devices()
	if err != nil || len(devs) == 0 {
		t.Fatalf("NVML initialised but read %d devices: %v", len(devs), err)
	}
}

func TestOverWatermark(t *testing.T) {
	devs := []Device{{Index: 0, TotalBytes: 100, UsedBytes: 89}, {Index: 1, TotalBytes: 100, UsedBytes: 90}, {Index: 2, TotalBytes: 0}}
	over := OverWatermark(devs, 90)
	if len(over) != 1 || over[0].Index != 1 {
		t.Fatalf("over 90%%: %+v, want device 1 only", over)
	}
	// Against the mock: device 7 uses 64 of 80 GiB (80%).
	r, _ := Open(h100(t, nil))
	all, _ := r.Devices()
	if got := OverWatermark(all, 80); len(got) != 1 || got[0].Index != 7 {
		t.Fatalf("over 80%% on the DGX H100 mock: %+v", got)
	}
}
