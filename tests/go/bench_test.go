package gotests

import (
	"context"
	"testing"

	"libbioxen/core"
	_ "libbioxen/embedded"
)

func benchExec(b *testing.B, code string, print bool) {
	vm, err := core.Open(core.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer vm.Close()
	src := []byte(code)
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := vm.Exec(ctx, src, core.ExecOptions{PrintResults: print}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEmbeddedReturn(b *testing.B)        { benchExec(b, "return 2 + 2", true) }
func BenchmarkEmbeddedReturnNoPrint(b *testing.B) { benchExec(b, "return 2 + 2", false) }
func BenchmarkEmbeddedGlobal(b *testing.B)        { benchExec(b, "x = 1; print(x)", false) }

func benchSession(b *testing.B, opts core.Options) {
	opts.Persistent = true
	vm, err := core.Open(opts)
	if err != nil {
		b.Fatal(err)
	}
	defer vm.Close()
	s, err := vm.NewSession()
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	code := []byte("print(2 + 2)")
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := s.Execute(ctx, code, core.ExecOptions{})
		if err != nil || string(res.Stdout) != "4\n" {
			b.Fatal(err, res)
		}
	}
}

func BenchmarkSessionEmbedded(b *testing.B) { benchSession(b, core.Options{}) }
func BenchmarkSessionProcessLua54(b *testing.B) {
	benchSession(b, core.Options{Engine: "process", Interpreter: "lua5.4"})
}
