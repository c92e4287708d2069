package embedded

import (
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"
	"weak"

	lua "github.com/yuin/gopher-lua"

	"libbioxen/core"
)

// state is one gopher-lua LState with our standard streams installed and a
// snapshot of its pristine library, so that a fresh-environment call can be
// verified (and cheaply restored) instead of paying ~110 µs for a new
// LState every call.
type state struct {
	L         *lua.LState
	ctx       *callCtx // the context of all its threads: limits and stops
	walkSeen  int      // objects the last memory walk saw (sizes the next one's set)
	walkPages int      // number blocks it charged (the same)
	count     memCount // collectgarbage("count")'s last walk in this call
	out, errw core.Capture

	stdout, stderr, stdin *lua.LUserData
	curOut, curIn         *lua.LUserData
	origInput, origOutput *lua.LFunction
	origType              *lua.LFunction
	printer               *lua.LFunction // print for returned values
	closer                *lua.LFunction // closes the upvalues at and above its base (see installPcall)
	tracer                *lua.LFunction // the chunk's error handler: records trace
	trace                 string         // the traceback of the chunk's error

	exited   bool
	exitCode int

	clock cpuClock // os.clock's account (clock.go)

	cCalls int // resumes and protected calls nested in each other (limits.go)
	// resumedFrames: call frames of the threads waiting in nested resumes
	// (limits.go, enterResume).
	resumedFrames int

	moduleGuard *pathGuard        // where require may look (nil: trusted, anywhere)
	guard       *pathGuard        // files Lua code may open (nil: trusted, any)
	fileMeta    *lua.LTable       // the metatable of our files
	files       map[*luaFile]bool // open files; true: opened by the current call

	snap       []tableSnap
	probes     []lua.LValue // a value of each type that has a shared metatable
	typeMts    []lua.LValue // their pristine metatables
	typeErrMt  *lua.LTable  // nil's, booleans', numbers' and functions' (typeerrors.go)
	tombstones int          // distinct user globals deleted so far (gopher-lua keeps their keys)

	// Idle states give buffers back (idle.go).
	idle         atomic.Int32      // stateBusy, stateParked ...
	framesParked bool              // the call stack's segment table is parked
	firstSeg     [1]unsafe.Pointer // the parked table: the stack's first segment
	parkedAt     atomic.Uint64     // sweepEpoch when it last parked with a big value stack
	inBig        bool              // in bigStates (guarded by bigMu)
	// Coroutines whose value stacks grew, for the sweep (set while a call
	// runs, read by the sweep while the state is parked).
	bigThreads map[weak.Pointer[lua.LState]]struct{}
	spares     [][]unsafe.Pointer // full frame tables for resumes
}

// tableSnap is a pristine library table: its entries in iteration order, the
// last key, its metatable and its array part.
type tableSnap struct {
	t         *lua.LTable
	mt        lua.LValue
	keys      []lua.LValue
	vals      []lua.LValue
	last      lua.LValue
	arrayLen  int // t.MaxN(), when arraySize is -1
	arraySize int // the length of its array part (-1: arrayPart cannot tell)
	arrayTop  int // the index of its last non-nil value, 0 if none
	globals   bool
}

// arrayShape is the length of t's array part and the index of its last
// non-nil value, or -1, 0 when arrayPart cannot tell.
func arrayShape(t *lua.LTable) (size, top int) {
	a := arrayPart(t)
	if a == nil {
		return -1, 0
	}
	for i := len(*a) - 1; i >= 0; i-- {
		if v := (*a)[i]; v != nil && v != lua.LNil {
			return len(*a), i + 1
		}
	}
	return len(*a), 0
}

// sameArray reports whether t's array part is as the snapshot saw it:
// restore's walk from the last key does not visit it (Next walks the array
// part first). It compares the part's length and its last value's index
// (the part is as long as it was: the snapshot's, a few values at most).
// t.MaxN also ranged over every key of the hash part, after the call's
// deadline: millions of number keys stored in _G made a stopped call
// return 0.6 s late; restore's walk sees those keys.
func (ts *tableSnap) sameArray(t *lua.LTable) bool {
	if ts.arraySize < 0 {
		return t.MaxN() == ts.arrayLen
	}
	size, top := arrayShape(t)
	return size == ts.arraySize && top == ts.arrayTop
}

// gopher-lua options: the value stack starts small (VMs are cheap to keep
// many of) and grows in large steps, so big tables and long
// table.concat/unpack calls neither overflow nor go quadratic; the call stack
// grows on demand up to 20,000 frames, Lua 5.1's LUAI_MAXCALLS (gopher-lua
// allocates a pointer per 8 frames of the maximum up front: 50,000 frames
// cost 50 KiB per state).
var luaOptions = lua.Options{
	CallStackSize:       20000,
	MinimizeStackMemory: true,
	RegistrySize:        256,
	RegistryMaxSize:     1 << 23,
	RegistryGrowStep:    1 << 16,
}

// maxTombstones bounds gopher-lua's never-shrinking key list of _G: past it
// the state is replaced.
const maxTombstones = 4096

// stateConfig is what makes states of different VMs differ.
type stateConfig struct {
	path, cpath string
	trusted     bool   // no sandbox
	allowed     string // allowed directories, "\x00"-separated (comparable)
	modules     string // module roots, likewise
}

func newState(cfg stateConfig) *state {
	st := &state{L: lua.NewState(luaOptions)}
	smallNumberPages(st.L)
	st.ctx = newCallCtx(st)
	st.L.SetContext(st.ctx)
	st.installCoroutines()
	st.installStdio()
	st.installBuiltins()
	st.installFastPaths()
	st.installCModuleLoader()
	st.installBioNative()
	if cfg.path != "" || cfg.cpath != "" {
		pkg := st.L.GetGlobal("package").(*lua.LTable)
		if cfg.path != "" {
			pkg.RawSetString("path", lua.LString(cfg.path+";"+lua.LVAsString(pkg.RawGetString("path"))))
		}
		if cfg.cpath != "" {
			pkg.RawSetString("cpath", lua.LString(cfg.cpath+";"+lua.LVAsString(pkg.RawGetString("cpath"))))
		}
	}
	if !cfg.trusted {
		envs := append(envDirs(cfg.path), envDirs(cfg.cpath)...)
		var allowed []string
		if cfg.allowed != "" {
			allowed = strings.Split(cfg.allowed, "\x00")
		}
		modules := append(append([]string(nil), envs...), allowed...)
		if cfg.modules != "" {
			modules = append(modules, strings.Split(cfg.modules, "\x00")...)
		}
		st.applySandbox(allowed, envs, modules)
	} else {
		st.installLoaders(nil, nil)
	}
	st.printer = st.L.NewFunction(st.print)
	st.curOut, st.curIn = st.stdout, st.stdin
	compactTables(st.L.G.Global, st.L.G.Registry)
	st.takeSnapshot()
	st.park()
	return st
}

func (st *state) takeSnapshot() {
	L := st.L
	seen := map[*lua.LTable]bool{}
	var keys, vals []lua.LValue // scratch, copied to exact size (every VM keeps a snapshot)
	var add func(t *lua.LTable, depth int, globals bool)
	add = func(t *lua.LTable, depth int, globals bool) {
		if seen[t] {
			return
		}
		seen[t] = true
		ts := tableSnap{t: t, mt: t.Metatable, last: lua.LNil, arrayLen: t.MaxN(), globals: globals}
		ts.arraySize, ts.arrayTop = arrayShape(t)
		var sub []*lua.LTable
		keys, vals = keys[:0], vals[:0]
		for k, v := t.Next(lua.LNil); k != lua.LNil; k, v = t.Next(k) {
			keys = append(keys, k)
			vals = append(vals, v)
			ts.last = k
			if tt, ok := v.(*lua.LTable); ok {
				sub = append(sub, tt)
			}
		}
		if len(keys) > 0 {
			ts.keys = append(make([]lua.LValue, 0, len(keys)), keys...)
			ts.vals = append(make([]lua.LValue, 0, len(vals)), vals...)
		}
		if mt, ok := t.Metatable.(*lua.LTable); ok {
			sub = append(sub, mt)
		}
		st.snap = append(st.snap, ts)
		if depth < 3 {
			for _, s := range sub {
				add(s, depth+1, false)
			}
		}
	}
	add(L.G.Global, 0, true)
	st.probes = []lua.LValue{lua.LNumber(0), lua.LTrue, lua.LNil, lua.LString(""), L.NewFunction(fileEOF)}
	for _, p := range st.probes {
		mt := L.GetMetatable(p)
		st.typeMts = append(st.typeMts, mt)
		if t, ok := mt.(*lua.LTable); ok {
			add(t, 1, false)
		}
	}
	for _, ud := range []*lua.LUserData{st.stdout, st.stderr, st.stdin} {
		if t, ok := ud.Metatable.(*lua.LTable); ok {
			add(t, 1, false)
		}
	}
	st.snap = append(make([]tableSnap, 0, len(st.snap)), st.snap...)
}

// restore brings the state back to pristine after a fresh-environment call.
// It deletes user globals (the common case, cheap) and reports false when
// anything else changed (a library entry, a metatable, package.loaded ...):
// the caller then drops the state for a new one.
func (st *state) restore() bool {
	L := st.L
	var added []lua.LValue
	for i := range st.snap {
		ts := &st.snap[i]
		t := ts.t
		if t.Metatable != ts.mt || !ts.sameArray(t) {
			return false
		}
		for j, k := range ts.keys {
			if t.RawGet(k) != ts.vals[j] {
				return false
			}
		}
		for k, _ := t.Next(ts.last); k != lua.LNil; k, _ = t.Next(k) {
			if ts.isPristineKey(k) {
				continue
			}
			if !ts.globals || st.tombstones+len(added) >= maxTombstones {
				// Replaced below anyway: walking on over millions of
				// added keys took 0.45 s after the call's deadline.
				return false
			}
			if !smallKey(k) {
				return false
			}
			added = append(added, k)
		}
	}
	for i, p := range st.probes {
		if L.GetMetatable(p) != st.typeMts[i] {
			return false
		}
	}
	if st.tombstones+len(added) > maxTombstones {
		return false
	}
	g := L.G.Global
	for _, k := range added {
		g.RawSet(k, lua.LNil)
	}
	st.tombstones += len(added)
	return true
}

// maxTombstoneKey is the longest name of a global whose key may stay in
// _G's key list once the global is deleted (see smallKey): with
// maxTombstones, 1 MiB at most.
const maxTombstoneKey = 256

// smallKey reports whether a deleted global's key may stay in _G's key
// list (gopher-lua keeps deleted keys): a number, a boolean or a short
// string. Any other key could hold any amount of memory for every later
// call: a global named by a 256 MiB string, or keyed by a table holding
// one, stayed in a VM with a 1 MiB limit after its call.
func smallKey(k lua.LValue) bool {
	switch k := k.(type) {
	case lua.LString:
		return len(k) <= maxTombstoneKey
	case lua.LNumber, lua.LBool:
		return true
	}
	return false
}

// isPristineKey reports whether k was in the table when the snapshot was
// taken (a linear scan: it only runs when Next walks back over pristine
// keys, which gopher-lua does for tables with both array and hash parts).
func (ts *tableSnap) isPristineKey(k lua.LValue) bool {
	for _, p := range ts.keys {
		if p == k {
			return true
		}
	}
	return false
}

func (st *state) close() {
	st.retire()
	st.closeFiles()
	st.L.Close()
}

// Small pools of pristine states, one per state configuration (VMs of one
// process almost always share one or two), filled in the background, so
// that opening a VM or replacing a dirtied state rarely pays for NewState
// (~110 µs) on the caller's time.
const poolSize = 2

type statePool struct {
	ready   chan *state
	filling atomic.Bool
}

var (
	pools     sync.Map // stateConfig -> *statePool
	poolCount atomic.Int32
)

// maxPools bounds the configurations that get a pool (and the spare
// states kept for them); others build their states on demand.
const maxPools = 8

func poolFor(cfg stateConfig) *statePool {
	if p, ok := pools.Load(cfg); ok {
		return p.(*statePool)
	}
	if poolCount.Load() >= maxPools {
		return nil
	}
	p, loaded := pools.LoadOrStore(cfg, &statePool{ready: make(chan *state, poolSize)})
	if !loaded {
		poolCount.Add(1)
	}
	return p.(*statePool)
}

// takeState returns a pristine state for cfg.
func takeState(cfg stateConfig) *state {
	p := poolFor(cfg)
	if p == nil {
		return newState(cfg)
	}
	select {
	case st := <-p.ready:
		go p.refill(cfg)
		return st
	default:
		go p.refill(cfg)
		return newState(cfg)
	}
}

func (p *statePool) refill(cfg stateConfig) {
	if !p.filling.CompareAndSwap(false, true) {
		return
	}
	defer p.filling.Store(false)
	for len(p.ready) < cap(p.ready) {
		st := newState(cfg)
		select {
		case p.ready <- st:
		default:
			st.close()
			return
		}
	}
}
