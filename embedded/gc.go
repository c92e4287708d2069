package embedded

import (
	"runtime"
	"sync"
)

// gopher-lua allocates on most arithmetic (numbers are boxed), so a hot
// Lua loop allocates megabytes per call while the live heap stays small.
// The Go collector's target is twice the live heap, at least 4 MiB: it then
// runs many times a second, and two VMs running in parallel spent more time
// collecting than computing (2 threads ran 1.2x one; 1.7x with fewer
// collections). A heap ballast raises the smallest target: a 64 MiB
// allocation that is never touched, so it takes address space, not memory.
// Garbage may then reach ~128 MiB before a collection, which is the price.
const ballastBytes = 64 << 20

var (
	ballastOnce sync.Once
	ballast     []byte
)

func keepBallast() {
	ballastOnce.Do(func() {
		ballast = make([]byte, ballastBytes)
		runtime.KeepAlive(ballast)
	})
}
