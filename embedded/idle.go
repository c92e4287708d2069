package embedded

import (
	"reflect"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
	"weak"

	lua "github.com/yuin/gopher-lua"
)

// An idle state (no call running) gives back two buffers gopher-lua sizes
// for the worst case:
//
//   - The call-frame stack's table of segment pointers, which gopher-lua
//     (MinimizeStackMemory) sizes for the maximum depth up front: 2,500
//     pointers, 20 KB, for our 20,000 frames, a quarter of a new VM's
//     memory. An idle stack uses its first segment only, so a parked state
//     keeps a one-entry table and the full one goes to a small spare list;
//     the next call takes a full table back before any Lua runs.
//   - The value stack (registry), which starts at 256 slots but grows by
//     RegistryGrowStep (64 Ki slots, 1 MiB) and never shrinks: a VM that
//     once recursed 200 deep kept over 1 MiB for good. A state idle for a
//     whole collection cycle gets a new 256-slot stack (the sweep after
//     each collection, from gc.go), so busy VMs keep theirs and idle ones
//     give it back. Its suspended coroutines whose value stacks grew get
//     stacks just the size of what they hold (a generator that once
//     recursed 200 deep kept 64 KB, which the memory limit counts).
//
// The fields are reached at offsets checked here against a state made with
// our options (go.mod pins gopher-lua v1.1.2); if they differ, parking is
// off and states keep their buffers (a test fails on it).
var parkLayout = func() (l struct {
	ok       bool
	stack    uintptr        // LState.stack (callFrameStack, an interface)
	itab     unsafe.Pointer // the interface's type word for *autoGrowingCallFrameStack
	segments uintptr        // autoGrowingCallFrameStack.segments ([]*segment)
	segIdx   uintptr        // .segIdx (uint16)
	segSp    uintptr        // .segSp (uint8)
	size     int            // len(segments) for luaOptions.CallStackSize
	segBytes int64          // the size of a segment (its frames)
	frame    reflect.Type   // callFrame, when a segment starts with an array of them (else nil)
}) {
	sf, ok := reflect.TypeOf(lua.LState{}).FieldByName("stack")
	if !ok || sf.Type.Kind() != reflect.Interface || len(sf.Index) != 1 || !layout.ok {
		return l
	}
	L := lua.NewState(lua.Options{CallStackSize: luaOptions.CallStackSize, MinimizeStackMemory: true, SkipOpenLibs: true})
	defer L.Close()
	dyn := reflect.ValueOf(L).Elem().Field(sf.Index[0]).Elem()
	if dyn.Kind() != reflect.Pointer || dyn.Elem().Kind() != reflect.Struct {
		return l
	}
	cs := dyn.Elem().Type()
	segs, ok1 := cs.FieldByName("segments")
	idx, ok2 := cs.FieldByName("segIdx")
	sp, ok3 := cs.FieldByName("segSp")
	if !ok1 || !ok2 || !ok3 || segs.Type.Kind() != reflect.Slice || segs.Type.Elem().Kind() != reflect.Pointer ||
		idx.Type.Kind() != reflect.Uint16 || sp.Type.Kind() != reflect.Uint8 {
		return l
	}
	l.stack, l.segments, l.segIdx, l.segSp = sf.Offset, segs.Offset, idx.Offset, sp.Offset
	seg := segs.Type.Elem().Elem()
	l.segBytes = int64(seg.Size())
	if frameLayoutErr == nil && seg.Kind() == reflect.Struct && seg.NumField() > 0 && seg.Field(0).Offset == 0 &&
		seg.Field(0).Type.Kind() == reflect.Array &&
		seg.Field(0).Type.Elem() == reflect.TypeOf(lua.Debug{}).FieldByIndex(frameLayout.frame).Type.Elem() {
		l.frame = seg.Field(0).Type.Elem()
	}
	iface := (*[2]unsafe.Pointer)(unsafe.Add(unsafe.Pointer(L), l.stack))
	l.itab = iface[0]
	table := *(*[]unsafe.Pointer)(unsafe.Add(iface[1], l.segments))
	l.size = len(table)
	l.ok = l.size == (luaOptions.CallStackSize+7)/8 && table[0] != nil
	return l
}()

// A state's idle flag: who may touch its buffers.
const (
	stateBusy     int32 = iota // a call runs (or is being set up) on it
	stateParked                // idle: the sweep may shrink its value stack
	stateSweeping              // the sweep is shrinking it
	stateClosed
)

// spareTables keeps a few full segment tables (parkLayout.size entries,
// all nil) for the next calls and resumes; the rest are garbage. (A
// sync.Pool kept every new state's table for two collection cycles: 200 MB
// for 10,000 VMs.)
var spareTables = make(chan []unsafe.Pointer, 16)

func getTable() []unsafe.Pointer {
	select {
	case t := <-spareTables:
		return t
	default:
		return make([]unsafe.Pointer, parkLayout.size)
	}
}

func putTable(t []unsafe.Pointer) {
	select {
	case spareTables <- t:
	default:
	}
}

// frameStack returns L's call-frame stack, or nil when it is not the kind
// parkLayout describes.
func frameStack(L *lua.LState) unsafe.Pointer {
	iface := (*[2]unsafe.Pointer)(unsafe.Add(unsafe.Pointer(L), parkLayout.stack))
	if iface[0] != parkLayout.itab {
		return nil
	}
	return iface[1]
}

// frames calls fn with each of th's frames, top first: the running or
// suspended ones, or the one a fresh coroutine holds for its function
// (gopher-lua keeps that function nowhere else).
func frames(th *lua.LState, fn func(frame)) {
	if fr := topFrame(th); !fr.IsNil() {
		for ; !fr.IsNil(); fr = fr.parent() {
			fn(fr)
		}
		return
	}
	if !parkLayout.ok || parkLayout.frame == nil {
		return
	}
	cs := frameStack(th)
	if cs == nil || *(*uint16)(unsafe.Add(cs, parkLayout.segIdx)) != 0 || *(*uint8)(unsafe.Add(cs, parkLayout.segSp)) != 1 {
		return
	}
	if table := *(*[]unsafe.Pointer)(unsafe.Add(cs, parkLayout.segments)); len(table) > 0 && table[0] != nil {
		fn(frame{reflect.NewAt(parkLayout.frame, table[0])})
	}
}

// reserveStack makes room for n more values on L's value stack at once,
// doubling it: gopher-lua grows it by RegistryGrowStep per push past the
// end, copying it whole each time, so pushing a million values onto a
// coroutine's stack (4,096-slot steps: unpack, string.byte, the values a
// resume passes) copied gigabytes in one Go call, past any deadline. Past
// RegistryMaxSize it does nothing: the push reports the overflow.
func reserveStack(L *lua.LState, n int) {
	if !layout.ok || n <= 0 {
		return
	}
	reg, top := valueStack(L)
	need := top + n
	if need <= cap(*reg) || need > luaOptions.RegistryMaxSize {
		return
	}
	grown := make([]lua.LValue, min(max(need, 2*cap(*reg)), luaOptions.RegistryMaxSize))
	copy(grown, (*reg)[:top])
	*reg = grown
}

// valueStack returns the address of L's value-stack slice and its top.
func valueStack(L *lua.LState) (*[]lua.LValue, int) {
	reg := *(*unsafe.Pointer)(unsafe.Add(unsafe.Pointer(L), layout.sReg))
	return (*[]lua.LValue)(unsafe.Add(reg, layout.rArray)), *(*int)(unsafe.Add(reg, layout.rTop))
}

// park runs when a call has ended (and when a state is made): it gives the
// segment table back, notes an outsized value stack for the sweep, and
// marks the state idle.
func (st *state) park() {
	if !parkLayout.ok || st.idle.Load() == stateClosed {
		return
	}
	st.parkFrames()
	for i, t := range st.spares { // an idle VM keeps none (20 KB each)
		putTable(t)
		st.spares[i] = nil
	}
	st.spares = st.spares[:0]
	if reg, top := valueStack(st.L); top == 0 && cap(*reg) > luaOptions.RegistrySize || len(st.bigThreads) > 0 {
		st.parkedAt.Store(sweepEpoch.Load())
		bigMu.Lock()
		if !st.inBig {
			st.inBig = true
			bigStates = append(bigStates, weak.Make(st))
		}
		bigMu.Unlock()
	}
	st.idle.Store(stateParked)
}

func (st *state) parkFrames() {
	if !st.framesParked && parkFrames(st.L, st.firstSeg[:], putTable) {
		st.framesParked = true
	}
}

// unpark runs before any Lua runs on the state: it waits out a sweep of it
// and gives the state its full segment table back.
func (st *state) unpark() {
	for !st.claim(stateBusy) {
		runtime.Gosched() // the sweep is shrinking the value stack: microseconds
	}
	if st.framesParked {
		lendFrames(st.L, getTable)
		st.framesParked = false
	}
}

// parkFrames gives L's full segment table back to the spare list and lets
// L keep a table of just the segments its frames use: small when it is
// long enough (its first entries must be nil), else a new one. It does
// nothing and reports false unless L has a full table. No Lua may run on
// L until lendFrames.
func parkFrames(L *lua.LState, small []unsafe.Pointer, put func([]unsafe.Pointer)) bool {
	cs := frameStack(L)
	if cs == nil {
		return false
	}
	used := int(*(*uint16)(unsafe.Add(cs, parkLayout.segIdx))) + 1
	segs := (*[]unsafe.Pointer)(unsafe.Add(cs, parkLayout.segments))
	full := *segs
	if len(full) != parkLayout.size || used >= len(full) || full[used] != nil {
		return false
	}
	if len(small) < used {
		small = make([]unsafe.Pointer, used)
	}
	small = small[:used]
	copy(small, full[:used])
	clear(full[:used])
	*segs = small
	put(full)
	return true
}

// lendFrames gives L a full segment table if it has a parked one; it
// returns the parked one, cleared (nil when L had a full table).
func lendFrames(L *lua.LState, get func() []unsafe.Pointer) []unsafe.Pointer {
	cs := frameStack(L)
	if cs == nil {
		return nil
	}
	segs := (*[]unsafe.Pointer)(unsafe.Add(cs, parkLayout.segments))
	small := *segs
	if len(small) == parkLayout.size {
		return nil
	}
	full := get()
	copy(full, small)
	clear(small)
	*segs = full
	return small
}

// Coroutines. gopher-lua gives every coroutine the same worst-case frame
// table as a state (20 KB): 20,000 live coroutines took 511 MB and 0.9 s to
// make, where lua5.4 takes 22 MB and 46 ms, and every collection scanned
// the tables. A coroutine is made with a one-segment table instead
// (smallThreads); a resume lends it a full table and takes it back when
// the coroutine yields or ends, leaving it the segments its frames use
// (lendThread, parkThread).

// smallThreads makes the coroutines that L creates until the returned
// function runs start with a one-segment frame table and a 64-slot value
// stack (1 KB, not 4) that grows by 4,096 slots (64 KB, not 1 MiB: a
// grown stack is given back only when the sweep finds the state idle).
// gopher-lua reads these options only when it makes a state.
func smallThreads(L *lua.LState) (restore func()) {
	if !parkLayout.ok {
		return func() {}
	}
	saved := L.Options
	L.Options.CallStackSize = 8 // gopher-lua's FramesPerSegment
	L.Options.RegistrySize = threadRegistrySize
	L.Options.RegistryGrowStep = threadRegistryGrowStep
	return func() { L.Options = saved }
}

const (
	threadRegistrySize     = 64
	threadRegistryGrowStep = 4096
)

// lendThread runs before L resumes th: it gives th a full frame table when
// th will run, and reports whether the caller must give it back with
// parkThread once the resume has returned. th runs only inside this resume (it is
// suspended: not running, not waiting in a resume of its own, not dead),
// so nothing else can be running on the table taken back.
func (st *state) lendThread(L, th *lua.LState) (small []unsafe.Pointer, own bool) {
	if !parkLayout.ok || th == nil || th.Dead || th == L.G.CurrentThread || resuming(L, th) {
		return nil, false
	}
	return lendFrames(th, st.getTable), true
}

func (st *state) parkThread(th *lua.LState, small []unsafe.Pointer) {
	parkFrames(th, small, st.putTable)
	if reg, _ := valueStack(th); cap(*reg) > threadRegistrySize {
		if st.bigThreads == nil {
			st.bigThreads = map[weak.Pointer[lua.LState]]struct{}{}
		}
		st.bigThreads[weak.Make(th)] = struct{}{}
	}
}

// shrinkThreads gives each coroutine in st.bigThreads a value stack just
// the size of what it holds (at least threadRegistrySize slots); it runs
// only while no Lua runs on st, so every coroutine is suspended or dead,
// and nothing it holds is above its top (a suspended coroutine's top frame
// is its call of coroutine.yield, whose arguments end at the top).
func (st *state) shrinkThreads() {
	for wp := range st.bigThreads {
		if th := wp.Value(); th != nil {
			reg, top := valueStack(th)
			if size := max(top, threadRegistrySize); size < cap(*reg) {
				small := make([]lua.LValue, size)
				copy(small, (*reg)[:top])
				*reg = small
			}
		}
		delete(st.bigThreads, wp)
	}
}

// A state keeps a few spare tables of its own for resumes: no locking (a
// state runs on one goroutine at a time).
const stateSpares = 4

func (st *state) getTable() []unsafe.Pointer {
	if n := len(st.spares); n > 0 {
		t := st.spares[n-1]
		st.spares[n-1] = nil
		st.spares = st.spares[:n-1]
		return t
	}
	return getTable()
}

func (st *state) putTable(t []unsafe.Pointer) {
	if len(st.spares) < stateSpares {
		st.spares = append(st.spares, t)
		return
	}
	putTable(t)
}

// resuming reports whether th is waiting in a resume on L's chain (Lua's
// "normal" status): L, its resumer, that one's resumer ...
func resuming(L, th *lua.LState) bool {
	for p := L; p != nil; p = p.Parent {
		if p == th {
			return true
		}
	}
	return false
}

// retire marks a state closed (the sweep drops it); it waits out a sweep.
func (st *state) retire() {
	for !st.claim(stateClosed) {
		runtime.Gosched()
	}
}

// claim moves the state to busy or closed from parked or busy (a closed
// state stays closed); it reports false while the sweep holds the state.
func (st *state) claim(to int32) bool {
	switch from := st.idle.Load(); from {
	case stateParked, stateBusy:
		return st.idle.CompareAndSwap(from, to)
	case stateClosed:
		return true
	}
	return false
}

var (
	sweepEpoch atomic.Uint64 // collections seen by the sweep
	bigMu      sync.Mutex
	bigStates  []weak.Pointer[state] // states that parked with an outsized value stack (theirs or a coroutine's)
)

// sweepIdleStates runs after each collection (gc.go): a state parked since
// before the previous one gets a value stack of the initial size.
func sweepIdleStates() {
	epoch := sweepEpoch.Add(1)
	bigMu.Lock()
	defer bigMu.Unlock()
	kept := bigStates[:0]
	for _, wp := range bigStates {
		st := wp.Value()
		if st == nil {
			continue
		}
		if !st.idle.CompareAndSwap(stateParked, stateSweeping) {
			if st.idle.Load() == stateBusy {
				kept = append(kept, wp) // it parks again later; look then
			} else {
				st.inBig = false // closed
			}
			continue
		}
		if epoch-st.parkedAt.Load() < 2 {
			st.idle.Store(stateParked)
			kept = append(kept, wp)
			continue
		}
		if reg, top := valueStack(st.L); top == 0 && cap(*reg) > luaOptions.RegistrySize {
			*reg = make([]lua.LValue, luaOptions.RegistrySize)
		}
		st.shrinkThreads()
		st.inBig = false
		st.idle.Store(stateParked)
	}
	clear(bigStates[len(kept):])
	bigStates = kept
}
