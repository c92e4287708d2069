package embedded

import (
	"math"

	lua "github.com/yuin/gopher-lua"

	"libbioxen/embedded/bionative"
)

// The Lua module "bio_compute.native": the Go kernels of package bionative
// for bio_compute.lua, which uses them when require can find this module
// (package.preload of every state, sandboxed or trusted) and falls back to
// its own Lua loops elsewhere. The functions only read the strings and
// numbers they are given and return new strings, numbers and tables: no
// access to files, globals or the host. docs/bio_compute.md describes them.
//
//	clean(seq [, keep_case])   -> string              | nil, pos
//	base_counts(seq)           -> A, C, G, T, N, other | nil, pos
//	reverse_complement(seq)    -> string              | nil, pos
//	translate(seq [, frame])   -> string              | nil, pos
//	six_frames(seq)            -> f1, f2, f3, r1, r2, r3 | nil, pos
//	kmer_counts(seq, k)        -> {kmer = count}      | nil, pos
//	abi                        =  1
//
// seq must be a string (numbers are not converted); a byte that is neither
// a sequence letter nor white space gives nil and its 1-based position, for
// the caller to report. A bad frame or k raises an error.
const bioNativeName = "bio_compute.native"

// bioNativeABI changes when the functions' contract does; bio_compute.lua
// ignores a module with another value.
const bioNativeABI = 1

func (st *state) installBioNative() {
	st.L.PreloadModule(bioNativeName, openBioNative)
}

func openBioNative(L *lua.LState) int {
	mod := L.CreateTable(0, 8)
	L.SetFuncs(mod, map[string]lua.LGFunction{
		"clean":              bnClean,
		"base_counts":        bnBaseCounts,
		"reverse_complement": bnReverseComplement,
		"translate":          bnTranslate,
		"six_frames":         bnSixFrames,
		"kmer_counts":        bnKmerCounts,
	})
	mod.RawSetString("abi", lua.LNumber(bioNativeABI))
	L.Push(mod)
	return 1
}

// bnSeq returns argument 1, which must be a string.
func bnSeq(L *lua.LState) string {
	s, ok := L.Get(1).(lua.LString)
	if !ok {
		L.TypeError(1, lua.LTString)
	}
	return string(s)
}

// bnStop is the stop function of a kernel called from L: every few
// hundred microseconds of work it polls the call's limits (deadline, CPU
// budget, memory); stopped, the kernel returns bionative.ErrStopped and
// bnInvalid raises the stop. (A sandboxed chunk runs on its caller's
// goroutine: six_frames of 128 MiB ran 0.5 s past a 30 ms deadline.)
func bnStop(L *lua.LState) func() bool {
	return func() bool { return pollLimits(L) != nil }
}

// bnInvalid returns nil and the position of an invalid byte, or raises the
// call's stop.
func bnInvalid(L *lua.LState, err error) int {
	if err == bionative.ErrStopped {
		L.RaiseError("%s: stopped (%v)", bioNativeName, pollLimits(L))
	}
	pos := 0
	if ie, ok := err.(*bionative.InvalidError); ok {
		pos = ie.Pos
	}
	L.Push(lua.LNil)
	L.Push(lua.LNumber(pos))
	return 2
}

// bnInt returns argument n as an integer when it is a number with a whole
// value (the only acceptable values are small; huge ones saturate).
func bnInt(L *lua.LState, n int) (int, bool) {
	v, ok := L.Get(n).(lua.LNumber)
	f := float64(v)
	if !ok || f != math.Trunc(f) || math.IsInf(f, 0) {
		return 0, false
	}
	switch {
	case f > math.MaxInt32:
		return math.MaxInt32, true
	case f < math.MinInt32:
		return math.MinInt32, true
	}
	return int(f), true
}

func bnClean(L *lua.LState) int {
	out, err := bionative.Clean(bnSeq(L), L.ToBool(2), bnStop(L))
	if err != nil {
		return bnInvalid(L, err)
	}
	L.Push(lua.LString(out)) // the argument's own bytes when nothing changed
	return 1
}

func bnBaseCounts(L *lua.LState) int {
	c, err := bionative.BaseCounts(bnSeq(L), bnStop(L))
	if err != nil {
		return bnInvalid(L, err)
	}
	for _, n := range [6]int{c.A, c.C, c.G, c.T, c.N, c.Other} {
		L.Push(lua.LNumber(n))
	}
	return 6
}

func bnReverseComplement(L *lua.LState) int {
	out, err := bionative.ReverseComplement(bnSeq(L), bnStop(L))
	if err != nil {
		return bnInvalid(L, err)
	}
	L.Push(lua.LString(out))
	return 1
}

func bnTranslate(L *lua.LState) int {
	s := bnSeq(L)
	frame := 1
	if L.Get(2) != lua.LNil {
		f, ok := bnInt(L, 2)
		if !ok || !bionative.ValidFrame(f) {
			L.ArgError(2, "frame must be 1, 2, 3, -1, -2 or -3")
		}
		frame = f
	}
	out, err := bionative.Translate(s, frame, bnStop(L))
	if err != nil {
		return bnInvalid(L, err)
	}
	L.Push(lua.LString(out))
	return 1
}

func bnSixFrames(L *lua.LState) int {
	six, err := bionative.SixFrames(bnSeq(L), bnStop(L))
	if err != nil {
		return bnInvalid(L, err)
	}
	for _, p := range six {
		L.Push(lua.LString(p))
	}
	return 6
}

// bnStopEvery is how many k-mers are stored in the table between checks of
// the call's context.
const bnStopEvery = 1 << 10

func bnKmerCounts(L *lua.LState) int {
	s := bnSeq(L)
	k, ok := bnInt(L, 2)
	if !ok || k < 1 {
		L.ArgError(2, "k must be a positive integer")
	}
	// Counting a long sequence with a long k can take a while: it stops
	// with the call (deadline, CPU budget, memory), as a Lua loop would.
	// (It asked the context for a deadline or a cancellation only.)
	// Its Go memory (100 to 200 bytes per distinct k-mer) is held to the
	// VM's memory limit too, as the Lua loops' tables would be.
	var room func(int64) bool
	c, _ := L.Context().(*callCtx)
	if c != nil {
		room = func(n int64) bool { return c.st.roomFor(L, n) }
	}
	kmers, err := bionative.KmerCountsRoom(s, min(k, len(s)+1), bnStop(L), room)
	if err == bionative.ErrNoRoom {
		c.stopNow(errMemLimit)
		c.st.raiseStop(L)
	}
	if err != nil {
		return bnInvalid(L, err)
	}
	// The keys may share the sequence's bytes (long k), but as Lua strings
	// they hold len(kmers)*k bytes, as they do built by the Lua loops: a
	// result over the memory limit stops the call now, not a later one.
	if c != nil && len(kmers) > 0 &&
		!c.st.roomFor(L, int64(len(kmers))*int64(len(kmers[0].Seq))) {
		c.stopNow(errMemLimit)
		c.st.raiseStop(L)
	}
	t := L.CreateTable(0, len(kmers))
	tk := workTicker{L: L}
	for i, km := range kmers {
		// Storing a key hashes it: poll every bnStopEvery keys and
		// every pollWork bytes of keys (long k).
		if i%bnStopEvery == bnStopEvery-1 {
			tk.poll()
		} else {
			tk.add(len(km.Seq))
		}
		t.RawSetString(km.Seq, lua.LNumber(km.Count))
	}
	L.Push(t)
	return 1
}
