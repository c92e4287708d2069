package embedded

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"sync"
)

// gopher-lua allocates on most arithmetic (numbers are boxed), so a hot
// Lua loop allocates megabytes per call while the live heap stays small.
// The Go collector's target is the live heap plus GOGC percent of it (at
// least 4 MiB): with a small heap it ran many times a second, and two VMs
// running in parallel spent more time collecting than computing (2 threads
// ran 1.2x one; 1.7x with fewer collections).
//
// The engine therefore tunes GOGC after every collection so that the next
// one waits for a base percentage of the live heap plus minGCGrowth of new
// allocation (a 4 MiB heap gets GOGC 1630, a 1 GiB one 36). The base is the
// process's GOGC when set, else defaultGCBase rather than Go's 100: a large
// heap is mostly Lua states (10,000 idle VMs hold ~0.65 GB) and then carries
// a third of its size in garbage, not all of it (10,000 VMs: 1.02-1.04 GB
// of RSS with a base of 100 or 50, 0.91 GB with 30). The cost is more
// collections for a program whose live heap is large, not for one with a
// small heap, where minGCGrowth decides. GOGC=off is left alone. (A heap
// ballast, a 64 MiB allocation never touched, did the same job until it
// turned out to be touched, and resident, in the C library's runtime.)
const minGCGrowth = 64 << 20

// defaultGCBase is the base percentage when GOGC is not set.
const defaultGCBase = 30

var gcTunerOnce sync.Once

// startGCTuner starts the tuning, once per process (at the first VM).
func startGCTuner() {
	gcTunerOnce.Do(func() {
		base := defaultGCBase
		if v := os.Getenv("GOGC"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return // "off" or unreadable: leave the collector as set
			}
			base = n
		}
		t := &gcTuner{base: base, sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
		t.tune()
		t.arm()
	})
}

type gcTuner struct {
	base   int
	sample []metrics.Sample
}

// gcSentinel becomes garbage right away: its finalizer runs after the next
// collection, re-tunes and arms a new one. (It holds a pointer so that it
// is not a tiny allocation, whose finalizers may never run.)
type gcSentinel struct{ t *gcTuner }

func (t *gcTuner) arm() {
	runtime.SetFinalizer(&gcSentinel{t: t}, func(s *gcSentinel) {
		sweepIdleStates()
		s.t.tune()
		s.t.arm()
	})
}

// tune sets GOGC for the live heap the last collection found.
func (t *gcTuner) tune() {
	metrics.Read(t.sample)
	live := uint64(0)
	if t.sample[0].Value.Kind() == metrics.KindUint64 {
		live = t.sample[0].Value.Uint64()
	}
	// (Under 4 MiB of live heap, Go's own minimum, 4 MB times GOGC/100,
	// is larger: the first collections wait for ~257 MB. Clamping live
	// at 4 MiB instead, for ~65 MB, cost 2 threads 1.66x -> 1.53x.)
	if live < 1<<20 {
		live = 1 << 20
	}
	// Growth before the next collection: base percent of the live heap
	// plus minGCGrowth (what a ballast of that size gave).
	debug.SetGCPercent(t.base + int(minGCGrowth*100/live))
}
