package supervise

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

const roleEnv = "SUPERVISE_TEST_ROLE"

// TestMain lets the test binary play the supervised program: its worker
// starts a long sleep in a process group of its own (as the demo's control
// plane runs), records its pid, and dies by SIGKILL, which no handler sees.
func TestMain(m *testing.M) {
	if os.Getenv(roleEnv) == "program" {
		Run()
		sleep := exec.Command("sleep", "300")
		sleep.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := sleep.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		_ = os.WriteFile(os.Getenv("SUPERVISE_TEST_PIDFILE"), []byte(strconv.Itoa(sleep.Process.Pid)), 0o600)
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	os.Exit(m.Run())
}

// TestWorkerKilledTakesItsChildrenWithIt: the worker is killed with
// SIGKILL; the supervisor exits 137 (128 + 9) and leaves no process the
// worker started running. Without the supervisor the sleep outlives it.
func TestWorkerKilledTakesItsChildrenWithIt(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, envWorker+"=") }),
		roleEnv+"=program", "SUPERVISE_TEST_PIDFILE="+pidFile)
	var exit *exec.ExitError
	if err := cmd.Run(); !errors.As(err, &exit) || exit.ExitCode() != 128+int(syscall.SIGKILL) {
		t.Fatalf("the supervisor exited with %v, want status 137", err)
	}
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		t.Fatalf("the worker's child %d still runs after the supervisor exited (kill 0: %v)", pid, err)
	}
}
