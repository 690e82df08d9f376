// Package process starts and stops the binaries that the demo and the
// benchmarks run beside a control plane (the manager, the provider
// emulator), and reads what the kernel says of their memory and CPU.
package process

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Process is a started child that must be stopped.
type Process struct {
	cmd     *exec.Cmd
	done    chan struct{}
	stopped bool
}

// Start runs path with args, its output in logPath, in a process group of
// its own: a Ctrl-C reaches only the caller, which then stops its children
// in order.
func Start(logPath, path string, args ...string) (*Process, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", path, err)
	}
	p := &Process{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); _ = logFile.Close(); close(p.done) }()
	return p, nil
}

// Pid is the child's process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Stop sends SIGTERM and waits up to 10s before killing. Calling it again
// does nothing.
func (p *Process) Stop() {
	if p.stopped {
		return
	}
	p.stopped = true
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Kill kills the process with SIGKILL, which it cannot see (a crash, as
// kill -9 gives), and waits for it to exit.
func (p *Process) Kill() {
	if p.stopped {
		return
	}
	p.stopped = true
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Stopped reports whether Stop or Kill was called.
func (p *Process) Stopped() bool { return p.stopped }

// FreePort returns a loopback TCP port nothing listens on now.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Usage is what the kernel counted for a running process.
type Usage struct {
	// PeakRSS is the resident set's high-water mark (VmHWM), in bytes.
	PeakRSS int64
	// CPU is user plus system time.
	CPU time.Duration
}

// UsageOf reads /proc for a running process.
func UsageOf(pid int) (Usage, error) {
	var u Usage
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return u, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			u.PeakRSS = kb << 10
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return u, err
	}
	// Fields after the command name (which may hold spaces) start at state.
	rest := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	if len(rest) > 12 {
		utime, _ := strconv.ParseInt(rest[11], 10, 64)
		stime, _ := strconv.ParseInt(rest[12], 10, 64)
		u.CPU = time.Duration(utime+stime) * (time.Second / 100) // USER_HZ is 100 on Linux
	}
	return u, nil
}

// Children lists the running children of the process ppid by command name
// (the kernel's, at most 15 bytes: "kube-apiserver", "etcd"), so a
// benchmark can read the CPU of the control plane that envtest started.
// A name held by several children keeps the last one read.
func Children(ppid int) (map[string]int, error) {
	all, err := running()
	if err != nil {
		return nil, err
	}
	kids := map[string]int{}
	for _, p := range all {
		if p.ppid == ppid {
			kids[p.name] = p.pid
		}
	}
	return kids, nil
}

// Parents maps every running process to its parent's pid: the tree a
// supervisor or a test walks to find what a program left behind.
func Parents() (map[int]int, error) {
	all, err := running()
	if err != nil {
		return nil, err
	}
	parents := make(map[int]int, len(all))
	for _, p := range all {
		parents[p.pid] = p.ppid
	}
	return parents, nil
}

// proc is a running process as /proc/<pid>/stat tells it.
type proc struct {
	pid, ppid int
	name      string
}

// running lists the running processes from /proc.
func running() ([]proc, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue // exited since the directory was read
		}
		// pid (name) state ppid ...: the name may hold spaces and parentheses.
		open, closing := strings.IndexByte(string(stat), '('), strings.LastIndexByte(string(stat), ')')
		if open < 0 || closing < open {
			continue
		}
		rest := strings.Fields(string(stat[closing+1:]))
		if len(rest) < 2 {
			continue
		}
		ppid, err := strconv.Atoi(rest[1])
		if err != nil {
			continue
		}
		out = append(out, proc{pid: pid, ppid: ppid, name: string(stat[open+1 : closing])})
	}
	return out, nil
}
