//go:build linux

package luaproc

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"libbioxen/core"
)

// TestMemoryLimitAboveTheHostsHardLimit: a host running under a hard
// RLIMIT_AS ("ulimit -v") lower than a VM's memory limit (1 GiB by
// default) could start no interpreter: raising the child's hard limit is
// EPERM (or, for root, loosened the host's own limit). The interpreter
// gets the host's limit instead. The host's limit is set in a child
// process of the test, so the test binary keeps its own.
func TestMemoryLimitAboveTheHostsHardLimit(t *testing.T) {
	if os.Getenv("BIOXEN_TEST_AS_CHILD") == "1" {
		memoryLimitUnderHardLimit(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestMemoryLimitAboveTheHostsHardLimit$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "BIOXEN_TEST_AS_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

func memoryLimitUnderHardLimit(t *testing.T) {
	// Room above what this process maps now (much under -race).
	host := vmSize(t) + 4<<30
	if err := syscall.Setrlimit(syscall.RLIMIT_AS, &syscall.Rlimit{Cur: host, Max: host}); err != nil {
		t.Fatal(err)
	}
	eachLua(t, func(t *testing.T, interp string) {
		e := openEngine(t, interp, core.Limits{MaxMemoryBytes: int64(host + 1<<30)})
		mustExec(t, e, "return 1", execOpts{})
		if got := asLimit(t, e.Pid()); got != fmt.Sprint(host) {
			t.Errorf("the interpreter's address space limit is %s, want the host's %d", got, host)
		}
	})
}

func vmSize(t *testing.T) uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmSize:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmSize")
	return 0
}

// asLimit is the hard address-space limit of process pid, as
// /proc/pid/limits shows it.
func asLimit(t *testing.T, pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "Max address space") {
			if f := strings.Fields(l); len(f) >= 5 {
				return f[4]
			}
		}
	}
	t.Fatalf("no address space limit in %s", b)
	return ""
}
