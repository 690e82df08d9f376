// Package gpu reads GPU memory and utilisation through NVML
// (github.com/NVIDIA/go-nvml), for the node agent's metrics, its
// high-watermark cleanup and the LLMProvider status. Where NVML is absent
// (no driver), Open fails with ErrNoNVML and the agent reports what
// Ollama's /api/ps says instead; it never crashes on it.
package gpu

import (
	"errors"
	"fmt"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// ErrNoNVML means the NVML library or driver is not there.
var ErrNoNVML = errors.New("NVML is not available (no NVIDIA driver on this node)")

// Device is one GPU's state at a moment.
type Device struct {
	Index int    `json:"index"`
	UUID  string `json:"uuid"`
	Name  string `json:"name"`
	// TotalBytes, UsedBytes, FreeBytes and ReservedBytes come from
	// GetMemoryInfo_v2 (reserved: held by the driver and firmware); where
	// only GetMemoryInfo exists, ReservedBytes is 0 and MemoryV2 false.
	TotalBytes    uint64 `json:"totalBytes"`
	UsedBytes     uint64 `json:"usedBytes"`
	FreeBytes     uint64 `json:"freeBytes"`
	ReservedBytes uint64 `json:"reservedBytes"`
	MemoryV2      bool   `json:"memoryV2"`
	// UtilizationPercent is the GPU's busy share over the last sample
	// period, -1 where the device does not report it.
	UtilizationPercent int `json:"utilizationPercent"`
	// Processes are the compute processes using the GPU, where reported.
	Processes []Process `json:"processes,omitempty"`
}

// Process is a process's use of one GPU.
type Process struct {
	PID       uint32 `json:"pid"`
	UsedBytes uint64 `json:"usedBytes"`
}

// UsedPercent is the share of memory in use, 0-100.
func (d Device) UsedPercent() float64 {
	if d.TotalBytes == 0 {
		return 0
	}
	return 100 * float64(d.UsedBytes) / float64(d.TotalBytes)
}

// Reader reads the devices through an NVML implementation: the real
// library (nvml.New()) or one of go-nvml's mock servers in tests.
type Reader struct {
	lib nvml.Interface
}

// Open initialises NVML. It returns an error wrapping ErrNoNVML when the
// library or driver is missing.
func Open(lib nvml.Interface) (r *Reader, err error) {
	defer func() {
		// go-nvml panics when libnvidia-ml.so cannot be loaded at all.
		if p := recover(); p != nil {
			r, err = nil, fmt.Errorf("%w: %v", ErrNoNVML, p)
		}
	}()
	if ret := lib.Init(); ret != nvml.SUCCESS {
		return nil, fmt.Errorf("%w: nvmlInit: %s", ErrNoNVML, nvml.ErrorString(ret))
	}
	return &Reader{lib: lib}, nil
}

// Close shuts NVML down.
func (r *Reader) Close() error {
	if ret := r.lib.Shutdown(); ret != nvml.SUCCESS {
		return fmt.Errorf("nvmlShutdown: %s", nvml.ErrorString(ret))
	}
	return nil
}

// Devices reads every GPU. A device that cannot be read fails the call;
// optional data (utilisation, processes) that a device does not report is
// left empty instead.
func (r *Reader) Devices() ([]Device, error) {
	n, ret := r.lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return nil, fmt.Errorf("nvmlDeviceGetCount: %s", nvml.ErrorString(ret))
	}
	out := make([]Device, 0, n)
	for i := range n {
		h, ret := r.lib.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			return nil, fmt.Errorf("device %d: nvmlDeviceGetHandleByIndex: %s", i, nvml.ErrorString(ret))
		}
		d, err := read(i, h)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

func read(i int, h nvml.Device) (Device, error) {
	d := Device{Index: i, UtilizationPercent: -1}
	d.UUID, _ = h.GetUUID()
	d.Name, _ = h.GetName()
	if m, ret := h.GetMemoryInfo_v2(); ret == nvml.SUCCESS {
		d.TotalBytes, d.UsedBytes, d.FreeBytes, d.ReservedBytes, d.MemoryV2 = m.Total, m.Used, m.Free, m.Reserved, true
	} else {
		m, ret := h.GetMemoryInfo()
		if ret != nvml.SUCCESS {
			return Device{}, fmt.Errorf("device %d: nvmlDeviceGetMemoryInfo: %s", i, nvml.ErrorString(ret))
		}
		d.TotalBytes, d.UsedBytes, d.FreeBytes = m.Total, m.Used, m.Free
	}
	if u, ret := h.GetUtilizationRates(); ret == nvml.SUCCESS {
		d.UtilizationPercent = int(u.Gpu)
	}
	if procs, ret := h.GetComputeRunningProcesses(); ret == nvml.SUCCESS {
		for _, p := range procs {
			d.Processes = append(d.Processes, Process{PID: p.Pid, UsedBytes: p.UsedGpuMemory})
		}
	}
	return d, nil
}

// OverWatermark reports the devices whose memory use is at or above
// percent of their total: the agent cleans up at once when any is.
func OverWatermark(devices []Device, percent int32) []Device {
	var over []Device
	for _, d := range devices {
		if d.TotalBytes > 0 && d.UsedPercent() >= float64(percent) {
			over = append(over, d)
		}
	}
	return over
}
