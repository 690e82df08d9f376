package gpu

import (
	"sync"

	"github.com/go-logr/logr"
)

// Monitor samples a node's GPUs for the agent. NVML is opened on the first
// sample; where it is absent the monitor says so once and reports nothing
// from then on (the agent falls back to Ollama's /api/ps), and a device
// that stops answering is logged once per distinct error, never per sample.
type Monitor struct {
	open func() (*Reader, error)
	log  logr.Logger

	mu      sync.Mutex
	opened  bool
	reader  *Reader
	lastErr string
}

// NewMonitor returns a monitor that opens NVML with open (gpu.Open of the
// real library, or of a go-nvml mock in tests).
func NewMonitor(open func() (*Reader, error), log logr.Logger) *Monitor {
	return &Monitor{open: open, log: log}
}

// Sample reads every device. ok is false where NVML is absent or the read
// failed; the caller then uses other sources.
func (m *Monitor) Sample() (devices []Device, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.opened {
		m.opened = true
		r, err := m.open()
		if err != nil {
			m.log.Info("NVML is not available; GPU memory is estimated from Ollama's /api/ps instead (size_vram, about 0.7 GiB a runner under its real use on an H200)", "reason", err.Error())
			return nil, false
		}
		m.reader = r
		m.log.Info("Reading GPU memory through NVML")
	}
	if m.reader == nil {
		return nil, false
	}
	devices, err := m.reader.Devices()
	if err != nil {
		if err.Error() != m.lastErr {
			m.log.Error(err, "Reading the GPUs through NVML; reporting from Ollama's /api/ps until it works again")
			m.lastErr = err.Error()
		}
		return nil, false
	}
	if m.lastErr != "" {
		m.log.Info("Reading the GPUs through NVML works again")
		m.lastErr = ""
	}
	return devices, true
}

// Close shuts NVML down if it was opened.
func (m *Monitor) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.reader == nil {
		return nil
	}
	err := m.reader.Close()
	m.reader = nil
	return err
}

// Totals sums memory over devices: what the LLMProvider status shows per
// node.
func Totals(devices []Device) (used, total uint64) {
	for _, d := range devices {
		used += d.UsedBytes
		total += d.TotalBytes
	}
	return used, total
}

// OverBy is how many bytes the devices hold above percent of their total,
// summed over the devices above it: what a watermark cleanup must free.
func OverBy(devices []Device, percent int32) int64 {
	var need int64
	for _, d := range OverWatermark(devices, percent) {
		need += int64(d.UsedBytes) - int64(d.TotalBytes*uint64(percent)/100)
	}
	return need
}
