// Package supervise runs a program (the demo, a benchmark) as a worker
// under a small supervisor that outlives it. Whatever ends the worker (a
// Ctrl-C it handles, a SIGKILL it cannot, a write to a closed pipe), the
// supervisor then ends every process the worker started and left behind,
// its control plane included, so nothing is left running on the machine.
// It relies on Linux's child subreaper: the worker's orphans, in whatever
// process group they put themselves, become the supervisor's children.
package supervise

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/llmquota/llmquota/internal/testbed/process"
)

// envWorker marks the worker's environment.
const envWorker = "LLMQUOTA_SUPERVISED"

// grace is how long a left-behind process has to stop after SIGTERM.
const grace = 10 * time.Second

// Run makes the calling program a supervised worker. Called first thing in
// main: in the supervisor it starts the program again as the worker, waits
// for it, ends what it left and exits with its status; in the worker it
// returns at once.
func Run() {
	if os.Getenv(envWorker) != "" {
		return
	}
	os.Exit(supervise())
}

func supervise() int {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "supervise: becoming a subreaper:", err)
		return 1
	}
	// A Ctrl-C reaches the worker too (one foreground process group), which
	// stops in order; SIGTERM and SIGHUP sent to this process alone are
	// passed on. A closed stdout (| tee, then Ctrl-C) must not end us.
	signal.Ignore(os.Interrupt, syscall.SIGPIPE)
	forward := make(chan os.Signal, 4)
	signal.Notify(forward, syscall.SIGTERM, syscall.SIGHUP)
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "supervise:", err)
		return 1
	}
	cmd := exec.Command(self, os.Args[1:]...)
	cmd.Env = append(os.Environ(), envWorker+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "supervise: starting the worker:", err)
		return 1
	}
	go func() {
		for s := range forward {
			_ = cmd.Process.Signal(s)
		}
	}()
	code := exitCode(cmd.Wait())
	if left := endChildren(grace); left > 0 {
		fmt.Fprintf(os.Stderr, "supervise: stopped %d processes the worker left running\n", left)
	}
	return code
}

// exitCode is the worker's exit status, 128 plus the signal that ended it.
func exitCode(err error) int {
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return exit.ExitCode()
	}
	return 1
}

// endChildren sends SIGTERM to every child left (the worker's orphans),
// SIGKILL to those still running after grace, reaps them all, and returns
// how many there were.
func endChildren(grace time.Duration) int {
	kids := children(os.Getpid())
	for _, pid := range kids {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(grace)
	for {
		for { // reap whatever has exited
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
		left := children(os.Getpid())
		if len(left) == 0 {
			return len(kids)
		}
		if time.Now().After(deadline) {
			for _, pid := range left {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// children lists the processes whose parent is ppid.
func children(ppid int) []int {
	parents, _ := process.Parents()
	var out []int
	for pid, parent := range parents {
		if parent == ppid {
			out = append(out, pid)
		}
	}
	return out
}
