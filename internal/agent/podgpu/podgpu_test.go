package podgpu

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/llmquota/llmquota/internal/agent/gpu"
)

const (
	uid = "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9"
	cid = "3f1c2a9d8e7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d"
)

func TestParseCgroup(t *testing.T) {
	cases := map[string]struct {
		file string
		want Owner
		ok   bool
	}{
		"v2, systemd driver, burstable": {"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0a1b2c3d_4e5f_6071_8293_a4b5c6d7e8f9.slice/cri-containerd-" + cid + ".scope\n",
			Owner{uid, cid}, true},
		"v2, systemd driver, guaranteed": {"0::/kubepods.slice/kubepods-pod0a1b2c3d_4e5f_6071_8293_a4b5c6d7e8f9.slice/cri-containerd-" + cid + ".scope\n",
			Owner{uid, cid}, true},
		"v2, cgroupfs driver, besteffort": {"0::/kubepods/besteffort/pod" + uid + "/" + cid + "\n", Owner{uid, cid}, true},
		"v2, read from another cgroup namespace": {"0::/../../kubepods-besteffort-pod0a1b2c3d_4e5f_6071_8293_a4b5c6d7e8f9.slice/cri-containerd-" + cid + ".scope\n",
			Owner{uid, cid}, true},
		"v2, CRI-O": {"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0a1b2c3d_4e5f_6071_8293_a4b5c6d7e8f9.slice/crio-" + cid + ".scope\n",
			Owner{uid, cid}, true},
		"v1, several hierarchies": {"12:pids:/kubepods/burstable/pod" + uid + "/" + cid + "\n11:memory:/kubepods/burstable/pod" + uid + "/" + cid + "\n0::/\n",
			Owner{uid, cid}, true},
		"the pod's own cgroup (a sandbox-level process)": {"0::/kubepods/besteffort/pod" + uid + "\n", Owner{PodUID: uid}, true},
		"a host service":    {"0::/system.slice/containerd.service\n", Owner{}, false},
		"a login session":   {"0::/user.slice/user-0.slice/session-1.scope\n", Owner{}, false},
		"empty":             {"", Owner{}, false},
		"not a cgroup file": {"pod" + uid, Owner{}, false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, ok := ParseCgroup([]byte(tc.file))
			if got != tc.want || ok != tc.ok {
				t.Fatalf("ParseCgroup = %+v, %t; want %+v, %t", got, ok, tc.want, tc.ok)
			}
		})
	}
}

var uidShape = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// FuzzParseCgroup: any file parses without a panic, and what it finds is a
// UID and, if any, a 64-hex container ID.
func FuzzParseCgroup(f *testing.F) {
	f.Add([]byte("0::/kubepods/besteffort/pod" + uid + "/" + cid + "\n"))
	f.Add([]byte("0::/kubepods.slice/kubepods-pod0a1b2c3d_4e5f_6071_8293_a4b5c6d7e8f9.slice/cri-containerd-" + cid + ".scope"))
	f.Add([]byte("12:memory:/kubepods/pod" + uid + "\n::\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		o, ok := ParseCgroup(data)
		if !ok {
			if o != (Owner{}) {
				t.Fatalf("not found, yet %+v", o)
			}
			return
		}
		if !uidShape.MatchString(o.PodUID) || (o.ContainerID != "" && len(o.ContainerID) != 64) {
			t.Fatalf("found %+v in %q", o, data)
		}
	})
}

func TestResolverReadsTheProcTree(t *testing.T) {
	root := t.TempDir()
	write := func(pid, content string) {
		if err := os.MkdirAll(filepath.Join(root, pid), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, pid, "cgroup"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("4242", "0::/kubepods/burstable/pod"+uid+"/"+cid+"\n")
	write("1", "0::/init.scope\n")
	r := Resolver{ProcRoot: root}
	if o, ok := r.Owner(4242); !ok || o != (Owner{uid, cid}) {
		t.Fatalf("pid 4242: %+v, %t", o, ok)
	}
	for _, pid := range []uint32{1, 999} { // not in a pod; gone
		if _, ok := r.Owner(pid); ok {
			t.Fatalf("pid %d has an owner", pid)
		}
	}
	if _, ok := (Resolver{}).Owner(4242); ok {
		t.Fatal("a resolver without a /proc root resolved a PID")
	}
}

func TestAttributeAndOverBy(t *testing.T) {
	const gib = 1 << 30
	owners := map[uint32]Owner{10: {"pod-a", "c1"}, 11: {"pod-a", "c2"}, 20: {"pod-b", "c3"}}
	owner := func(pid uint32) (Owner, bool) { o, ok := owners[pid]; return o, ok }
	devices := []gpu.Device{
		{Index: 0, TotalBytes: 80 * gib, UsedBytes: 76 * gib, Processes: []gpu.Process{{PID: 10, UsedBytes: 30 * gib}, {PID: 20, UsedBytes: 40 * gib}, {PID: 99, UsedBytes: 5 * gib}}},
		{Index: 1, TotalBytes: 80 * gib, UsedBytes: 10 * gib, Processes: []gpu.Process{{PID: 11, UsedBytes: 8 * gib}}},
	}
	got := Attribute(devices, owner)
	if len(got) != 2 {
		t.Fatalf("%d pods, want 2 (pid 99 is not in a pod): %+v", len(got), got)
	}
	a, b := got["pod-a"], got["pod-b"]
	if a.Bytes != 38*gib || a.ByGPU[0] != 30*gib || a.ByGPU[1] != 8*gib || a.ByContainer["c1"] != 30*gib || a.ByContainer["c2"] != 8*gib {
		t.Fatalf("pod-a: %+v", a)
	}
	if b.Bytes != 40*gib || b.ByGPU[0] != 40*gib {
		t.Fatalf("pod-b: %+v", b)
	}
	// GPU 0 is 4 GiB over 90% (72 GiB); GPU 1 is under.
	if n := OverBy(devices, 90, got, "pod-a"); n != 4*gib {
		t.Fatalf("pod-a can free %d, want the 4 GiB excess of GPU 0", n)
	}
	got["pod-c"] = Usage{ByGPU: map[int]uint64{0: gib}}
	if n := OverBy(devices, 90, got, "pod-c"); n != gib {
		t.Fatalf("a pod holding 1 GiB of GPU 0 can free at most 1 GiB, got %d", n)
	}
	if n := OverBy(devices, 90, got, "pod-elsewhere"); n != 0 {
		t.Fatalf("a pod holding nothing on the GPU over its watermark must free %d, want 0", n)
	}
	devices[1].UsedBytes = 76 * gib // now GPU 1 is over too, and only pod-a's 8 GiB there is known
	if n := OverBy(devices, 90, got, "pod-b"); n != 4*gib {
		t.Fatalf("pod-b holds 40 GiB on GPU 0 and nothing on GPU 1: must free %d, want 4 GiB", n)
	}
	if n := OverBy(devices, 90, map[string]Usage{}, "pod-b"); n != 8*gib {
		t.Fatalf("with no memory mapped to any pod, every pod answers for the whole excess (8 GiB), got %d", n)
	}
}
