package luaproc

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"libbioxen/core"
)

// TestInterpreterDiesWithHost: a host that dies without closing its VMs
// (killed, crashed) does not leave an interpreter looping in a chunk
// behind. The test re-runs its own binary as the host.
func TestInterpreterDiesWithHost(t *testing.T) {
	if os.Getenv("BIOXEN_ORPHAN_HOST") == "1" {
		orphanHost()
		return
	}
	if _, err := exec.LookPath("lua5.4"); err != nil {
		t.Skip("lua5.4 is not installed")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestInterpreterDiesWithHost$")
	cmd.Env = append(os.Environ(), "BIOXEN_ORPHAN_HOST=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		t.Fatalf("host: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "interpreter ")))
	if err != nil {
		cmd.Process.Kill()
		t.Fatalf("host said %q", line)
	}
	// The host is killed while its interpreter loops in a chunk.
	cmd.Process.Kill()
	cmd.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("interpreter %d outlived its host", pid)
		}
		time.Sleep(10 * time.Millisecond) // polling for the kernel to act, not for output
	}
}

func orphanHost() {
	eng, err := Open(core.Options{Engine: "process", Interpreter: "lua5.4"})
	if err != nil {
		fmt.Println("error", err)
		return
	}
	e := eng.(*Engine)
	go e.Exec(context.Background(), &core.Request{Code: []byte("while true do end"), ChunkName: "=input"})
	for e.pid.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	fmt.Printf("interpreter %d\n", e.pid.Load())
	select {} // until killed
}
