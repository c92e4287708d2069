package embedded

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"unsafe"

	lua "github.com/yuin/gopher-lua"
)

// stopAfter is a context whose Poll reports a stop from its n-th call on.
type stopAfter struct {
	context.Context
	n, calls int
}

func (c *stopAfter) Poll() error {
	if c.calls++; c.calls >= c.n {
		return errors.New("stopped")
	}
	return nil
}

// TestShiftPolledFinishesOrUndoes: a shift stopped between two pieces is
// finished or undone, whichever is shorter, never left half done.
func TestShiftPolledFinishesOrUndoes(t *testing.T) {
	const n = 3*shiftPoll + 5
	for _, up := range []bool{true, false} {
		for stopAt := 1; stopAt <= 4; stopAt++ {
			L := lua.NewState(lua.Options{SkipOpenLibs: true})
			L.SetContext(&stopAfter{Context: context.Background(), n: stopAt})
			s := make([]lua.LValue, n+1)
			for i := range s {
				s[i] = lua.LNumber(i)
			}
			stop, undone := shiftPolled(L, s, up)
			L.Close()
			wantStop := stopAt <= 3 // three polls between four pieces
			if (stop != nil) != wantStop {
				t.Fatalf("up=%v stop at %d: stop %v", up, stopAt, stop)
			}
			if wantStop && undone != (stopAt == 1) { // after 1 of 4 pieces: undo; after 2 or 3: finish
				t.Errorf("up=%v stop at %d: undone=%v", up, stopAt, undone)
			}
			for i := range s {
				want := lua.LNumber(i)
				switch {
				case undone && up && i == n, undone && !up && i == 0:
					continue // the caller restores it
				case !undone && up && i > 0:
					want = lua.LNumber(i - 1)
				case !undone && !up && i < n:
					want = lua.LNumber(i + 1)
				}
				if s[i] != want {
					t.Fatalf("up=%v stop at %d undone=%v: s[%d] = %v, want %v", up, stopAt, undone, i, s[i], want)
				}
			}
		}
	}
}

// TestLongSliceGrowthsPoll: a store that grows a table's array part or key
// list past its room copies it to a new slice in pieces, polling between
// them (gopher-lua's growSlice): a stop leaves the table as it was, and
// without a stop the store is made. (append copied millions of values in
// one Go call: 0.15-1 s.)
func TestLongSliceGrowthsPoll(t *testing.T) {
	full := func(L *lua.LState, keys bool) (*lua.LTable, *[]lua.LValue) {
		tb := L.NewTable()
		field := layout.tArray
		if keys {
			field = layout.tKeys
		}
		s := (*[]lua.LValue)(unsafe.Add(unsafe.Pointer(tb), field))
		for i := 1; len(*s) < 3*65536 || len(*s) < cap(*s); i++ {
			if keys {
				tb.RawSetString(strconv.Itoa(i), lua.LNumber(i))
			} else {
				tb.RawSetInt(i, lua.LNumber(i))
			}
		}
		return tb, s
	}
	for _, keys := range []bool{false, true} {
		for _, stopAt := range []int{1, 2, 100} {
			L := lua.NewState(lua.Options{SkipOpenLibs: true})
			L.SetContext(&stopAfter{Context: context.Background(), n: stopAt})
			tb, s := full(L, keys)
			n, c := len(*s), cap(*s)
			L.Push(L.NewFunction(func(L *lua.LState) int {
				if keys {
					L.RawSet(tb, lua.LString("new"), lua.LTrue)
				} else {
					L.RawSetInt(tb, n+1, lua.LTrue)
				}
				return 0
			}))
			err := L.PCall(0, 0, nil)
			stopped := stopAt <= 2 // at least three pieces: two polls or more
			if (err != nil) != stopped {
				t.Fatalf("keys=%v stop at %d: %v", keys, stopAt, err)
			}
			switch {
			case stopped && (len(*s) != n || cap(*s) != c):
				t.Errorf("keys=%v stop at %d: %d values, room for %d; want %d, %d", keys, stopAt, len(*s), cap(*s), n, c)
			case !stopped && (len(*s) != n+1 || cap(*s) <= c):
				t.Errorf("keys=%v: %d values, room for %d after the store", keys, len(*s), cap(*s))
			}
			want := lua.LValue(lua.LTrue)
			if stopped {
				want = lua.LNil
			}
			if keys && tb.RawGetString("new") != want || !keys && tb.RawGetInt(n+1) != want {
				t.Errorf("keys=%v stop at %d: the new value is not %v", keys, stopAt, want)
			}
			for i := 1; i <= 1000; i++ {
				if keys && tb.RawGetString(strconv.Itoa(i)) != lua.LNumber(i) || !keys && tb.RawGetInt(i) != lua.LNumber(i) {
					t.Fatalf("keys=%v stop at %d: value %d lost", keys, stopAt, i)
				}
			}
			L.Close()
		}
	}
}
