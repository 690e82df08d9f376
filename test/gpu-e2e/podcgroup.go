package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/llmquota/llmquota/internal/agent/podgpu"
)

// cgroupRoots are where a pod's cgroup may be made: the unified (v2)
// hierarchy, else one v1 hierarchy (a v1 /proc/<pid>/cgroup lists every
// hierarchy, and the agent takes the line that names a pod).
var cgroupRoots = []string{"/sys/fs/cgroup", "/sys/fs/cgroup/pids", "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/memory"}

// podCgroup is a cgroup laid out as the kubelet's cgroupfs driver lays out
// a pod's container, kubepods/besteffort/pod<uid>/<container ID>, under a
// folder of its own (a kubelet on the same machine removes pod cgroups it
// does not know, and must not meet this one). The Ollama server is moved
// into it, and the runners it starts later inherit it, so the agent's
// --proc-root mapping meets a real /proc/<pid>/cgroup.
type podCgroup struct {
	root, leaf string
}

// enterPodCgroup moves pid into a new cgroup for the pod and checks that
// /proc shows it as podgpu reads it. An error means this machine cannot
// (no writable cgroup filesystem): the per-pod check is then skipped.
func enterPodCgroup(uid, containerID string, pid int) (*podCgroup, error) {
	var errs []error
	for _, root := range cgroupRoots {
		if _, err := os.Stat(filepath.Join(root, "cgroup.procs")); err != nil {
			errs = append(errs, err)
			continue
		}
		cg := &podCgroup{root: root, leaf: filepath.Join(root, "llmquota-gpu-e2e", "kubepods", "besteffort", "pod"+uid, containerID)}
		if err := cg.enter(pid); err != nil {
			cg.remove()
			errs = append(errs, err)
			continue
		}
		owner, ok := podgpu.Resolver{ProcRoot: "/proc"}.Owner(uint32(pid))
		if !ok || owner.PodUID != uid || owner.ContainerID != containerID {
			data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
			cg.remove()
			return nil, fmt.Errorf("moved into %s, but /proc/%d/cgroup reads %q (owner %+v)", cg.leaf, pid, data, owner)
		}
		return cg, nil
	}
	return nil, errors.Join(errs...)
}

func (cg *podCgroup) enter(pid int) error {
	if err := os.MkdirAll(cg.leaf, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(cg.leaf, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644)
}

// explain prints what a failed per-pod check needs read: the PIDs NVML's
// processes have, the cgroup /proc gives each, and who is in the pod's.
func (cg *podCgroup) explain() {
	out, _ := exec.Command("nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader").CombinedOutput()
	fmt.Printf("nvidia-smi's processes:\n%s", out)
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pid, _, _ := strings.Cut(line, ",")
		data, err := os.ReadFile(filepath.Join("/proc", strings.TrimSpace(pid), "cgroup"))
		fmt.Printf("/proc/%s/cgroup: %q %v\n", strings.TrimSpace(pid), data, err)
	}
	procs, err := os.ReadFile(filepath.Join(cg.leaf, "cgroup.procs"))
	fmt.Printf("%s/cgroup.procs: %q %v\n", cg.leaf, procs, err)
}

// remove moves what is left back to the root and removes the cgroups, so
// a dry run in CI leaves the machine as it found it.
func (cg *podCgroup) remove() {
	if data, err := os.ReadFile(filepath.Join(cg.leaf, "cgroup.procs")); err == nil {
		for _, pid := range strings.Fields(string(data)) {
			_ = os.WriteFile(filepath.Join(cg.root, "cgroup.procs"), []byte(pid), 0o644)
		}
	}
	for dir := cg.leaf; dir != cg.root && strings.HasPrefix(dir, cg.root); dir = filepath.Dir(dir) {
		_ = os.Remove(dir)
	}
}
