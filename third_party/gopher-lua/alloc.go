package lua

import (
	"math"
	"reflect"
	"unsafe"
)

// iface is an internal representation of the go-interface.
type iface struct {
	itab unsafe.Pointer
	word unsafe.Pointer
}

// bioxen: the integers in [smallNumberMin, smallNumberMax) are boxed once,
// in a static array, rather than per result (upstream: 0..127). Loop
// counters, indexes, counts and scores mostly lie in that range, and a
// result boxed in an allocator page keeps its page alive. The array costs
// 532 KiB per process.
const (
	smallNumberMin = -1024
	smallNumberMax = 1 << 16
)

var _fv float64
var _uv uintptr

var smallNumbers [smallNumberMax - smallNumberMin]float64

// numberItab is the interface table of an LNumber held in an LValue.
var numberItab unsafe.Pointer

func init() {
	for i := range smallNumbers {
		smallNumbers[i] = float64(i + smallNumberMin)
	}
	var v LValue = LNumber(0)
	numberItab = (*iface)(unsafe.Pointer(&v)).itab
}

// smallNumber returns the shared boxed value of v when v is an integer in
// the static range; -0 is not one (its sign shows in 1/v).
func smallNumber(v LNumber) (LValue, bool) {
	if v < smallNumberMin || v >= smallNumberMax {
		return nil, false
	}
	i := int64(v) // (NaN is none: it fails the check below)
	if float64(i) != float64(v) || i == 0 && math.Signbit(float64(v)) {
		return nil, false
	}
	var lv LValue
	p := (*iface)(unsafe.Pointer(&lv))
	p.itab, p.word = numberItab, unsafe.Pointer(&smallNumbers[i-smallNumberMin])
	return lv, true
}

// NumberValue is n as an LValue, sharing the boxed small integers
// (bioxen): for code without an allocator at hand, such as a fast path
// (LFastFunction).
func NumberValue(n LNumber) LValue {
	if v, ok := smallNumber(n); ok {
		return v
	}
	return n
}

// allocator is a fast bulk memory allocator for the LValue.
type allocator struct {
	size    int
	fptrs   []float64
	fheader *reflect.SliceHeader

	scratchValue  LValue
	scratchValueP *iface
}

func newAllocator(size int) *allocator {
	al := &allocator{
		size:    size,
		fptrs:   make([]float64, 0, size),
		fheader: nil,
	}
	al.fheader = (*reflect.SliceHeader)(unsafe.Pointer(&al.fptrs))
	al.scratchValue = LNumber(0)
	al.scratchValueP = (*iface)(unsafe.Pointer(&al.scratchValue))

	return al
}

// LNumber2I takes a number value and returns an interface LValue representing the same number.
// Converting an LNumber to a LValue naively, by doing:
// `var val LValue = myLNumber`
// will result in an individual heap alloc of 8 bytes for the float value. LNumber2I amortizes the cost and memory
// overhead of these allocs by allocating blocks of floats instead.
// The downside of this is that all of the floats on a given block have to become eligible for gc before the block
// as a whole can be gc-ed.
func (al *allocator) LNumber2I(v LNumber) LValue {
	// first check for shared preloaded numbers
	if lv, ok := smallNumber(v); ok {
		return lv
	}

	// check if we need a new alloc page
	if cap(al.fptrs) == len(al.fptrs) {
		al.fptrs = make([]float64, 0, al.size)
		al.fheader = (*reflect.SliceHeader)(unsafe.Pointer(&al.fptrs))
	}

	// alloc a new float, and store our value into it
	al.fptrs = append(al.fptrs, float64(v))
	fptr := &al.fptrs[len(al.fptrs)-1]

	// hack our scratch LValue to point to our allocated value
	// this scratch lvalue is copied when this function returns meaning the scratch value can be reused
	// on the next call
	al.scratchValueP.word = unsafe.Pointer(fptr)

	return al.scratchValue
}
