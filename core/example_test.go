package core_test

import (
	"context"
	"fmt"
	"time"

	"libbioxen/core"
	_ "libbioxen/embedded" // registers the "embedded" engine
	_ "libbioxen/luaproc"  // registers the "process" engine
)

// Run a chunk on the embedded engine (the default) and read its printed
// and returned values.
func Example() {
	vm, err := core.Open(core.Options{})
	if err != nil {
		panic(err)
	}
	defer vm.Close()
	res, err := vm.Exec(context.Background(), []byte(`print("GC:", 0.5) return 2 + 2, {"A", "T"}`), core.ExecOptions{})
	if err != nil {
		panic(err) // a typed *core.Error: timeout, memory limit, closed VM ...
	}
	values, _ := core.DecodeValues(res.Values)
	fmt.Printf("%s%v %v\n", res.Stdout, res.Success, values)
	// Output:
	// GC:	0.5
	// true [4 [A T]]
}

// A Lua error is a Result, not a Go error; a breached limit is a Go error
// whose Code says which, and the VM stays usable.
func ExampleVM_Exec_errors() {
	vm, _ := core.Open(core.Options{Limits: core.Limits{MaxCPUTime: time.Second}})
	defer vm.Close()
	ctx := context.Background()

	res, _ := vm.Exec(ctx, []byte(`error("boom")`), core.ExecOptions{})
	fmt.Println(res.Success, res.ReturnCode, res.ErrorMessage)

	_, err := vm.Exec(ctx, []byte(`while true do end`), core.ExecOptions{Timeout: 50 * time.Millisecond})
	fmt.Println(core.CodeOf(err) == core.ErrTimeout)

	res, _ = vm.Exec(ctx, []byte(`return 1 + 1`), core.ExecOptions{PrintResults: true})
	fmt.Printf("%s", res.Stdout)
	// Output:
	// false 1 input:1: boom
	// true
	// 2
}

// A persistent VM keeps its globals; a session drives it like `lua -i`.
func ExampleVM_NewSession() {
	vm, _ := core.Open(core.Options{Persistent: true})
	defer vm.Close()
	s, err := vm.NewSession()
	if err != nil {
		panic(err)
	}
	defer s.Close()
	s.Send([]byte("x = 6\nfunction f(a)\n"))
	s.Send([]byte("  return a * x\nend\nprint(f(7))\n"))
	if _, err := s.Wait(5 * time.Second); err != nil { // until the input has run
		panic(err)
	}
	out, _ := s.Read(core.Stdout, 0)
	fmt.Printf("%s", out)
	// Output:
	// 42
}

// The process engine runs a real interpreter (here Lua 5.4, with its
// integers) as a child process, under the same contract.
func ExampleOptions_process() {
	vm, err := core.Open(core.Options{Engine: "process", Interpreter: "lua5.4"})
	if err != nil {
		fmt.Println(core.CodeOf(err)) // ErrLuaNotFound when lua5.4 is not installed
		return
	}
	defer vm.Close()
	res, _ := vm.Exec(context.Background(), []byte(`return 7 // 2, math.type(1), _VERSION`), core.ExecOptions{PrintResults: true})
	fmt.Printf("%s", res.Stdout)
	// Output:
	// 3	integer	Lua 5.4
}
