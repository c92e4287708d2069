package embedded

import (
	"context"
	"errors"
	"testing"

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
