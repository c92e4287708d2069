package embedded

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

// TestGCTuner: a collection waits for the base percentage of the live heap
// plus 64 MiB of allocation.
func TestGCTuner(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	tu := &gcTuner{base: 50, sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
	runtime.GC()
	tu.tune()
	if gogc() < 400 {
		t.Fatalf("small heap: GOGC %d, want the 64 MiB minimum growth to raise it", gogc())
	}
	big := make([][]byte, 0, 256) // ~256 MiB live
	for range 256 {
		big = append(big, make([]byte, 1<<20))
	}
	runtime.GC()
	tu.tune()
	if got := gogc(); got < 50 || got > 80 {
		t.Fatalf("large heap: GOGC %d, want the base 50 plus 64 MiB's worth (~25)", got)
	}
	runtime.KeepAlive(big)
}

// TestGCTunerArmed: the tuner re-tunes after collections on its own.
func TestGCTunerArmed(t *testing.T) {
	startGCTuner()
	debug.SetGCPercent(100)
	deadline := time.Now().Add(10 * time.Second)
	for gogc() == 100 {
		if time.Now().After(deadline) {
			t.Fatal("no re-tuning after collections")
		}
		runtime.GC() // queues the sentinel's finalizer
		runtime.Gosched()
	}
}

func gogc() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}
