// Package podgpu answers the question dcgm-exporter's users have asked for
// years: which pod holds how much GPU memory. NVML lists each GPU's compute
// processes by host PID; a process's cgroup (/proc/<pid>/cgroup, read from
// the node's /proc) names the pod's UID and the container it runs in, as
// the kubelet and the container runtime laid them out. Pure Go: the
// /proc root is a parameter, so tests feed it files.
package podgpu

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/llmquota/llmquota/internal/agent/gpu"
)

// Owner is the pod and container a process runs in.
type Owner struct {
	// PodUID is the pod's metadata.uid.
	PodUID string
	// ContainerID is the runtime's 64-hex container ID (the part of
	// status.containerStatuses[].containerID after "containerd://").
	ContainerID string
}

// The kubelet names a pod's cgroup after its UID: "pod<uid>" with the
// cgroupfs driver, "kubepods-<qos>-pod<uid with _ for ->.slice" with the
// systemd driver. Containers are the last element: the ID, bare or as
// "cri-containerd-<id>.scope", "crio-<id>.scope", "docker-<id>.scope".
var (
	podUID      = regexp.MustCompile(`pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})`)
	containerID = regexp.MustCompile(`^(?:[a-z-]+-)?([0-9a-f]{64})(?:\.scope)?$`)
)

// ParseCgroup finds the pod and container in the contents of a
// /proc/<pid>/cgroup file: cgroup v2 ("0::/path") or v1 (one line per
// hierarchy), either driver, and paths relative to another cgroup
// namespace ("0::/../../kubepods-...") as a containerized reader sees them.
// ok is false for a process that is not in a pod.
func ParseCgroup(data []byte) (Owner, bool) {
	for _, line := range strings.Split(string(data), "\n") {
		// hierarchy-ID:controllers:path; the path may itself hold colons.
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		path := parts[2]
		m := podUID.FindStringSubmatch(path)
		if m == nil {
			continue
		}
		o := Owner{PodUID: strings.ReplaceAll(m[1], "_", "-")}
		if c := containerID.FindStringSubmatch(filepath.Base(path)); c != nil {
			o.ContainerID = c[1]
		}
		return o, true
	}
	return Owner{}, false
}

// Resolver finds the owner of host PIDs in a /proc tree: the node's /proc
// mounted into the agent (--proc-root=/host/proc), or /proc itself where the
// agent shares the host's PID namespace.
type Resolver struct {
	ProcRoot string
}

// Owner returns the pod and container of a host PID; ok is false when the
// process is gone, is not in a pod, or the resolver has no /proc root.
func (r Resolver) Owner(pid uint32) (Owner, bool) {
	if r.ProcRoot == "" {
		return Owner{}, false
	}
	data, err := os.ReadFile(filepath.Join(r.ProcRoot, strconv.FormatUint(uint64(pid), 10), "cgroup"))
	if err != nil {
		return Owner{}, false
	}
	return ParseCgroup(data)
}

// Usage is one pod's GPU memory, as NVML counts its processes.
type Usage struct {
	// Bytes is the sum over its processes and GPUs.
	Bytes uint64
	// ByGPU is the bytes on each GPU, by index.
	ByGPU map[int]uint64
	// ByContainer is the bytes of each container, by ID.
	ByContainer map[string]uint64
}

// Attribute sums each GPU's compute processes by the pod they run in.
// Processes outside pods (the host's, another runtime's) are left out.
func Attribute(devices []gpu.Device, owner func(pid uint32) (Owner, bool)) map[string]Usage {
	out := map[string]Usage{}
	for _, d := range devices {
		for _, p := range d.Processes {
			o, ok := owner(p.PID)
			if !ok {
				continue
			}
			u, seen := out[o.PodUID]
			if !seen {
				u = Usage{ByGPU: map[int]uint64{}, ByContainer: map[string]uint64{}}
			}
			u.Bytes += p.UsedBytes
			u.ByGPU[d.Index] += p.UsedBytes
			u.ByContainer[o.ContainerID] += p.UsedBytes
			out[o.PodUID] = u
		}
	}
	return out
}

// OverBy is how much of the memory above percent on the GPUs past it pod
// could free, given every pod's usage: on each such GPU, the smaller of
// the excess and what the pod holds there, so a pod holding nothing on a
// GPU over the watermark has nothing to do with it. A GPU none of whose
// memory maps to a pod (NVML lists no processes, or none in pods) counts
// whole for every pod, as without per-pod figures.
func OverBy(devices []gpu.Device, percent int32, all map[string]Usage, pod string) int64 {
	var need int64
	for _, d := range gpu.OverWatermark(devices, percent) {
		excess := int64(d.UsedBytes) - int64(d.TotalBytes*uint64(percent)/100)
		if !attributed(all, d.Index) {
			need += excess
			continue
		}
		need += min(excess, int64(all[pod].ByGPU[d.Index]))
	}
	return need
}

func attributed(all map[string]Usage, gpuIndex int) bool {
	for _, u := range all {
		if u.ByGPU[gpuIndex] > 0 {
			return true
		}
	}
	return false
}
