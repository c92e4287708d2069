package embedded

import (
	"reflect"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	lua "github.com/yuin/gopher-lua"

	"libbioxen/core"
)

// Memory accounting per VM.
//
// Go has no per-goroutine heap accounting, so a VM's memory is measured by
// walking what its Lua state holds: the values reachable from its globals,
// its registry and the value stacks of its threads, each charged an
// estimate of its size (a string its length plus a header, a table its
// array and hash slots plus a header, ...). The walk runs on the goroutine
// running the chunk (from the instruction hook, see callCtx.check), so it
// reads a consistent state. It is only needed after the process allocated
// enough to have possibly used up the room left under the limit: a
// process-wide sampler publishes the total bytes allocated every
// memSampleEvery, and a VM walks again when that total has grown by half of
// its remaining room. A VM over its limit is stopped (ErrNoMem) and its
// state is thrown away. Overshoot is bounded by what one chunk allocates in
// one sampling period plus a walk's error; docs/sandbox.md has the details.

const memSampleEvery = 5 * time.Millisecond

var (
	allocTotal  atomic.Uint64 // bytes allocated by the process so far (sampled)
	memWatchers atomic.Int32  // calls that need the sampler
	samplerMu   sync.Mutex
	samplerOn   bool
)

const allocMetric = "/gc/heap/allocs:bytes"

func sampleAllocs() {
	if n := processAllocs(); n != 0 {
		allocTotal.Store(n)
	}
}

// processAllocs is the bytes the process has allocated so far, read now
// (allocTotal, the sampler's, is up to memSampleEvery old); 0 if unknown.
func processAllocs() uint64 {
	s := []metrics.Sample{{Name: allocMetric}}
	metrics.Read(s)
	if s[0].Value.Kind() == metrics.KindUint64 {
		return s[0].Value.Uint64()
	}
	return 0
}

// memWatchStart registers a call that needs allocTotal kept current.
func memWatchStart() {
	memWatchers.Add(1)
	samplerMu.Lock()
	defer samplerMu.Unlock()
	if !samplerOn {
		samplerOn = true
		sampleAllocs()
		go sampler()
	}
}

func memWatchStop() { memWatchers.Add(-1) }

// sampler updates allocTotal while calls need it and for a second after
// the last one ended (calls are often short and back to back).
func sampler() {
	t := time.NewTicker(memSampleEvery)
	defer t.Stop()
	idle := 0
	for range t.C {
		sampleAllocs()
		if memWatchers.Load() > 0 {
			idle = 0
			continue
		}
		if idle++; idle < int(time.Second/memSampleEvery) {
			continue
		}
		samplerMu.Lock()
		if memWatchers.Load() == 0 {
			samplerOn = false
			samplerMu.Unlock()
			return
		}
		samplerMu.Unlock()
		idle = 0
	}
}

// gopher-lua keeps a table's slots, and a thread's value stack, in
// unexported fields. Their offsets are looked up (and their types checked)
// once; if a gopher-lua upgrade changes them, layoutOK is false and
// memUsage falls back to the exported view (TestMemoryLayout fails).
var layout = func() (l struct {
	ok                                   bool
	tArray, tDict, tStrdict, tKeys, tK2i uintptr
	sReg, rArray, rTop                   uintptr
}) {
	field := func(t reflect.Type, name string, want reflect.Type) (uintptr, bool) {
		f, ok := t.FieldByName(name)
		if !ok || (want != nil && f.Type != want) {
			return 0, false
		}
		return f.Offset, true
	}
	values := reflect.TypeOf([]lua.LValue(nil))
	tbl := reflect.TypeOf(lua.LTable{})
	var ok [8]bool
	l.tArray, ok[0] = field(tbl, "array", values)
	l.tDict, ok[1] = field(tbl, "dict", reflect.TypeOf(map[lua.LValue]lua.LValue(nil)))
	l.tStrdict, ok[2] = field(tbl, "strdict", reflect.TypeOf(map[string]lua.LValue(nil)))
	l.tKeys, ok[3] = field(tbl, "keys", values)
	l.tK2i, ok[7] = field(tbl, "k2i", reflect.TypeOf(map[lua.LValue]int(nil)))
	st := reflect.TypeOf(lua.LState{})
	l.sReg, ok[4] = field(st, "reg", nil)
	if f, found := st.FieldByName("reg"); found && f.Type.Kind() == reflect.Pointer && f.Type.Elem().Kind() == reflect.Struct {
		reg := f.Type.Elem()
		l.rArray, ok[5] = field(reg, "array", values)
		l.rTop, ok[6] = field(reg, "top", reflect.TypeOf(0))
	}
	l.ok = true
	for _, b := range ok {
		l.ok = l.ok && b
	}
	return l
}()

func init() {
	if !layout.ok {
		core.Logf(core.LevelWarn, "embedded: gopher-lua's table layout is not the expected one; memory accounting sees globals and tables through the public API only")
	}
}

// Estimated sizes (bytes) of gopher-lua's objects and slots.
const (
	sizeSlot     = 16 // an LValue interface
	sizeString   = 32 // string header + interface box
	sizeTable    = 96
	sizeMapEntry = 72 // key and value slots, control bytes, growth slack
	sizeNumber   = 16 // a float64 boxed in an LValue
	sizeFunction = 96
	sizeProto    = 240 // a FunctionProto
	sizeUpvalue  = 56
	sizeUserdata = 64
)

// sizeThread is a coroutine's fixed cost besides its value stack and its
// call-frame stack's segment table (a pointer per 8 frames, see
// threadSize): the LState, its first segment and what gopher-lua makes
// along. Measured: 26.7 KB with the 4 KB value stack and a 20 KB table.
const sizeThread = 2700

// threadSize is th's fixed cost: sizeThread and its segment table, 8 bytes
// per 8 frames in use (a suspended or new coroutine, idle.go) or 20 KB (a
// running one), and the segments past the first (8 frames each: a
// coroutine suspended 19,000 frames deep holds 1.5 MB of them).
func threadSize(th *lua.LState) int64 {
	n, segs := (luaOptions.CallStackSize+7)/8, 1
	if parkLayout.ok {
		if cs := frameStack(th); cs != nil {
			table := *(*[]unsafe.Pointer)(unsafe.Add(cs, parkLayout.segments))
			n, segs = len(table), 0
			for segs < len(table) && table[segs] != nil {
				segs++
			}
		}
	}
	return sizeThread + 8*int64(n) + int64(max(segs-1, 0))*parkLayout.segBytes
}

// memWalk estimates the bytes held by values reachable from roots; it
// stops counting once over limit (limit <= 0: no early stop).
type memWalk struct {
	total     int64
	limit     int64
	seen      map[unsafe.Pointer]struct{}
	pages     map[uintptr]struct{} // number blocks charged (see numberBlock)
	pagesHint int                  // how many the last walk found
	lastPage  uintptr
	todo      []lua.LValue
	done      <-chan struct{}
}

func (w *memWalk) push(v lua.LValue) {
	switch x := v.(type) {
	case lua.LString:
		w.total += sizeString
		w.bytes(string(x))
	case lua.LNumber:
		w.number(v)
	case *lua.LTable, *lua.LFunction, *lua.LUserData, *lua.LState:
		w.todo = append(w.todo, x)
	}
}

// Numbers. gopher-lua boxes the numbers that arithmetic makes into pages
// of its allocator, and a page stays alive while one of them does: with
// its 32-number pages, keeping one result in 32 (a score per window of a
// computation) held 256 bytes per number where 16 were charged (587 MB
// under a 64 MiB limit). States and coroutines use pages of numberPage
// numbers (smallNumberPages: 128 bytes, at 128-byte boundaries as Go
// places objects of that size; ~5% slower arithmetic loops than 32, 12%
// for 8), and a number is charged the 128-byte block it lies in, once per
// walk: its page, exactly, or for a number Go boxed (a builtin's result, 8
// bytes of a 16-byte block) the block around it, which over-counts only
// numbers kept sparsely among other small strings and numbers (by up to
// 8x; 1.1-2x for numbers parsed from text, in TestMemoryEstimate). The
// small integers gopher-lua boxes once, in a static array, are charged
// the same way: at most the array's 532 KiB, for a VM holding all of them.
const (
	numberPage  = 16
	numberBlock = 8 * numberPage
)

// smallNumberPages makes L's allocator use pages of numberPage numbers
// (from its next page on).
func smallNumberPages(L *lua.LState) {
	if allocLayout.ok {
		al := *(*unsafe.Pointer)(unsafe.Add(unsafe.Pointer(L), allocLayout.alloc))
		*(*int)(unsafe.Add(al, allocLayout.size)) = numberPage
	}
}

// allocLayout locates LState.alloc (*allocator) and allocator.size (int).
var allocLayout = func() (l struct {
	ok          bool
	alloc, size uintptr
}) {
	f, ok := reflect.TypeOf(lua.LState{}).FieldByName("alloc")
	if !ok || f.Type.Kind() != reflect.Pointer || f.Type.Elem().Kind() != reflect.Struct {
		return l
	}
	size, ok := f.Type.Elem().FieldByName("size")
	if !ok || size.Type.Kind() != reflect.Int {
		return l
	}
	l.ok, l.alloc, l.size = true, f.Offset, size.Offset
	return l
}()

func (w *memWalk) number(v lua.LValue) {
	page := uintptr((*[2]unsafe.Pointer)(unsafe.Pointer(&v))[1]) &^ (numberBlock - 1)
	if page == w.lastPage {
		return
	}
	w.lastPage = page
	if _, ok := w.pages[page]; !ok {
		if w.pages == nil {
			w.pages = make(map[uintptr]struct{}, w.pagesHint)
		}
		w.pages[page] = struct{}{}
		w.total += numberBlock
	}
}

// stopped reports that the call was stopped (its deadline passed): a
// long walk gives up rather than keep the call running.
func (w *memWalk) stopped() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

// sharedString is the length from which a string's bytes are charged once
// per walk however many values refer to them (keyed by the address of
// its bytes): `t[i] = s` copies the string header, not the bytes, and a
// megabyte string stored 300 times was charged 300 MB (a false ErrNoMem).
// Shorter strings are charged per value, which spares the walk a map
// entry for each.
const sharedString = 256

// bytes charges the bytes of s, once per walk for a long one.
func (w *memWalk) bytes(s string) {
	if len(s) >= sharedString && !w.first(unsafe.Pointer(unsafe.StringData(s))) {
		return
	}
	w.total += int64(len(s))
}

func (w *memWalk) first(p unsafe.Pointer) bool {
	if _, ok := w.seen[p]; ok {
		return false
	}
	w.seen[p] = struct{}{}
	return true
}

func (w *memWalk) run() {
	for n := 1; len(w.todo) > 0 && (w.limit <= 0 || w.total <= w.limit); n++ {
		if n%(1<<14) == 0 && w.stopped() {
			return
		}
		v := w.todo[len(w.todo)-1]
		w.todo = w.todo[:len(w.todo)-1]
		switch x := v.(type) {
		case *lua.LTable:
			if w.first(unsafe.Pointer(x)) {
				w.table(x)
			}
		case *lua.LFunction:
			if w.first(unsafe.Pointer(x)) {
				w.total += sizeFunction + int64(len(x.Upvalues))*sizeUpvalue
				if x.Proto != nil {
					w.proto(x.Proto)
				}
				if x.Env != nil {
					w.todo = append(w.todo, x.Env)
				}
				for _, uv := range x.Upvalues {
					if uv != nil {
						w.push(uv.Value())
					}
				}
			}
		case *lua.LUserData:
			if w.first(unsafe.Pointer(x)) {
				w.total += sizeUserdata
				if held, ok := x.Value.(interface{ MemSize() int64 }); ok {
					w.total += held.MemSize() // Go data a Lua value keeps (a gmatch pattern)
				}
				if x.Env != nil {
					w.todo = append(w.todo, x.Env)
				}
				w.push(x.Metatable)
			}
		case *lua.LState:
			if w.first(unsafe.Pointer(x)) {
				w.thread(x)
			}
		}
	}
}

// proto charges a function prototype and the ones nested in it, each once
// per walk: its code, constants and debug information. The closures of
// one prototype share it; a chunk made by load holds its string constants
// there (40 loads of a 25 MB string literal held 1 GB unseen).
func (w *memWalk) proto(root *lua.FunctionProto) {
	todo := []*lua.FunctionProto{root}
	for len(todo) > 0 {
		p := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if !w.first(unsafe.Pointer(p)) {
			continue
		}
		w.total += sizeProto +
			int64(cap(p.Code))*4 + int64(cap(p.DbgSourcePositions))*8 +
			int64(cap(p.Constants))*sizeSlot + int64(cap(p.FunctionPrototypes))*8 +
			int64(cap(p.DbgLocals))*48 + int64(cap(p.DbgCalls))*24 + int64(cap(p.DbgUpvalues))*16
		w.bytes(p.SourceName)
		for _, c := range p.Constants {
			w.push(c)
		}
		for _, l := range p.DbgLocals {
			if l != nil {
				w.bytes(l.Name)
			}
		}
		for _, c := range p.DbgCalls {
			w.bytes(c.Name)
		}
		for _, u := range p.DbgUpvalues {
			w.bytes(u)
		}
		todo = append(todo, p.FunctionPrototypes...)
	}
}

func (w *memWalk) table(t *lua.LTable) {
	w.total += sizeTable
	w.push(t.Metatable)
	if !layout.ok {
		t.ForEach(func(k, v lua.LValue) {
			w.total += sizeMapEntry
			w.push(k)
			w.push(v)
		})
		return
	}
	p := unsafe.Pointer(t)
	array := *(*[]lua.LValue)(unsafe.Add(p, layout.tArray))
	w.total += int64(cap(array)) * sizeSlot
	for i, v := range array {
		// A table of millions of numbers is one item of the walk: look
		// at the call's stop inside it too (a walk of 3 million numbers
		// outlasted a deadline's grace).
		if i&(1<<16-1) == 1<<16-1 && w.stopped() {
			return
		}
		w.push(v)
	}
	// keys (with k2i) lists every key ever set in the hash part, in
	// insertion order: gopher-lua never takes a deleted key out, so a
	// deleted key's string or table stays alive there (3,000 deleted 1 MB
	// keys held 3 GB unseen). The keys are charged from it, live or not.
	keys := *(*[]lua.LValue)(unsafe.Add(p, layout.tKeys))
	if keys != nil {
		w.total += int64(cap(keys)) * (sizeSlot + sizeMapEntry) // keys and k2i
		for i, k := range keys {
			if i&(1<<16-1) == 1<<16-1 && w.stopped() {
				return
			}
			w.push(k)
		}
	}
	for k, v := range *(*map[lua.LValue]lua.LValue)(unsafe.Add(p, layout.tDict)) {
		w.total += sizeMapEntry
		if keys == nil {
			w.push(k)
		}
		w.push(v)
	}
	for k, v := range *(*map[string]lua.LValue)(unsafe.Add(p, layout.tStrdict)) {
		w.total += sizeMapEntry
		if keys == nil {
			w.bytes(k)
		}
		w.push(v)
	}
}

func (w *memWalk) thread(th *lua.LState) {
	w.total += threadSize(th)
	if th.Env != nil {
		w.todo = append(w.todo, th.Env)
	}
	// The functions of its frames, with their upvalues: a coroutine's
	// function is nowhere else (1,500 coroutines each holding a 1 MB
	// upvalue were 1.5 GB unseen).
	frames(th, func(fr frame) { w.todo = append(w.todo, fr.fn()) })
	if !layout.ok {
		return
	}
	reg := *(*unsafe.Pointer)(unsafe.Add(unsafe.Pointer(th), layout.sReg))
	if reg == nil {
		return
	}
	array := *(*[]lua.LValue)(unsafe.Add(reg, layout.rArray))
	top := *(*int)(unsafe.Add(reg, layout.rTop))
	w.total += int64(cap(array)) * sizeSlot
	for _, v := range array[:min(max(top, 0), len(array))] {
		w.push(v)
	}
}

// memUsage estimates the bytes st's Lua state holds, counting at most a
// little past limit (limit <= 0: everything). It gives up early, returning
// what it counted, when done is closed.
func (st *state) memUsage(limit int64, done <-chan struct{}) int64 {
	L := st.L
	w := memWalk{limit: limit, seen: make(map[unsafe.Pointer]struct{}, st.walkSeen), done: done, pagesHint: st.walkPages}
	defer func() { st.walkSeen, st.walkPages = len(w.seen), len(w.pages) }()
	w.todo = append(w.todo, L.G.Global, L.G.Registry, L.G.MainThread)
	if L.G.CurrentThread != nil {
		w.todo = append(w.todo, L.G.CurrentThread)
	}
	w.run()
	return w.total
}

// compactTables gives every table reachable from roots exactly the room
// its entries need. gopher-lua makes library and metatables with room for
// 32 array slots and 32 hash entries (~3 KiB each) and grows maps by
// doubling; a new state holds ~100 such tables, so compacting them once,
// before its pristine snapshot, saves a fifth of its memory. The contents
// and iteration order are unchanged.
func compactTables(roots ...lua.LValue) {
	if !layout.ok {
		return
	}
	seen := map[*lua.LTable]bool{}
	todo := append([]lua.LValue(nil), roots...)
	for len(todo) > 0 {
		v := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		switch x := v.(type) {
		case *lua.LTable:
			if seen[x] {
				continue
			}
			seen[x] = true
			todo = append(todo, x.Metatable)
			x.ForEach(func(k, v lua.LValue) { todo = append(todo, k, v) })
			compactTable(x)
		case *lua.LFunction:
			if x.Env != nil {
				todo = append(todo, x.Env)
			}
			for _, uv := range x.Upvalues {
				if uv != nil {
					todo = append(todo, uv.Value())
				}
			}
		}
	}
}

func compactTable(t *lua.LTable) {
	p := unsafe.Pointer(t)
	array := (*[]lua.LValue)(unsafe.Add(p, layout.tArray))
	if cap(*array) > len(*array) {
		if len(*array) == 0 {
			*array = nil
		} else {
			*array = append([]lua.LValue(nil), *array...)
		}
	}
	strdict := (*map[string]lua.LValue)(unsafe.Add(p, layout.tStrdict))
	if *strdict != nil {
		m := make(map[string]lua.LValue, len(*strdict))
		for k, v := range *strdict {
			m[k] = v
		}
		*strdict = m
	}
	dict := (*map[lua.LValue]lua.LValue)(unsafe.Add(p, layout.tDict))
	if *dict != nil {
		m := make(map[lua.LValue]lua.LValue, len(*dict))
		for k, v := range *dict {
			m[k] = v
		}
		*dict = m
	}
	keys := (*[]lua.LValue)(unsafe.Add(p, layout.tKeys))
	k2i := (*map[lua.LValue]int)(unsafe.Add(p, layout.tK2i))
	if *keys != nil && *k2i != nil {
		*keys = append(make([]lua.LValue, 0, len(*keys)), *keys...)
		m := make(map[lua.LValue]int, len(*k2i))
		for k, v := range *k2i {
			m[k] = v
		}
		*k2i = m
	}
}
