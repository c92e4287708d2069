package embedded

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

// TestGCTuner: a collection waits for the base percentage of the live heap
// plus 64 MiB of allocation, whatever the heap the other tests left.
func TestGCTuner(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	tu := &gcTuner{base: defaultGCBase, sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
	check := func(what string) {
		t.Helper()
		runtime.GC()
		tu.tune()
		live := max(readUint(t, "/gc/heap/live:bytes"), 1<<20)
		want := defaultGCBase + int(minGCGrowth*100/live)
		if got := int(readUint(t, "/gc/gogc:percent")); got != want {
			t.Fatalf("%s (live %d MiB): GOGC %d, want %d", what, live>>20, got, want)
		}
		if what == "large heap" && want > defaultGCBase+30 {
			t.Fatalf("large heap: GOGC %d is not near the base", want)
		}
	}
	check("small heap")
	big := make([][]byte, 0, 512) // 512 MiB more live
	for range 512 {
		big = append(big, make([]byte, 1<<20))
	}
	check("large heap")
	runtime.KeepAlive(big)
}

// TestGCTunerArmed: the tuner re-tunes after collections on its own.
func TestGCTunerArmed(t *testing.T) {
	startGCTuner()
	defer debug.SetGCPercent(debug.SetGCPercent(7)) // a value the tuner never sets (its base is 50)
	deadline := time.Now().Add(10 * time.Second)
	for readUint(t, "/gc/gogc:percent") == 7 {
		if time.Now().After(deadline) {
			t.Fatal("no re-tuning after collections")
		}
		runtime.GC() // queues the sentinel's finalizer
		runtime.Gosched()
	}
}

func readUint(t *testing.T, name string) uint64 {
	t.Helper()
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		t.Fatalf("metric %s unavailable", name)
	}
	return s[0].Value.Uint64()
}
