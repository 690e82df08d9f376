// Command gpu-check prints what the node agent's NVML reader
// (internal/agent/gpu) reports, one line per GPU, for hack/gpu-check.sh to
// set beside nvidia-smi's figures.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/llmquota/llmquota/internal/agent/gpu"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run() error {
	r, err := gpu.Open(nvml.New())
	if errors.Is(err, gpu.ErrNoNVML) {
		fmt.Println("no NVML on this machine:", err)
		return nil
	}
	if err != nil {
		return err
	}
	defer func() { _ = r.Close() }()
	devs, err := r.Devices()
	if err != nil {
		return err
	}
	const mib = 1 << 20
	for _, d := range devs {
		fmt.Printf("gpu %d %s: used %d MiB / total %d MiB (free %d, reserved %d, v2=%v), utilisation %d%%, %d processes, over a 90%% watermark: %v\n",
			d.Index, d.Name, d.UsedBytes/mib, d.TotalBytes/mib, d.FreeBytes/mib, d.ReservedBytes/mib, d.MemoryV2,
			d.UtilizationPercent, len(d.Processes), len(gpu.OverWatermark([]gpu.Device{d}, 90)) > 0)
		for _, p := range d.Processes {
			fmt.Printf("  pid %d uses %d MiB\n", p.PID, p.UsedBytes/mib)
		}
	}
	out, err := json.Marshal(devs)
	if err != nil {
		return err
	}
	fmt.Println(string(out))
	return nil
}
