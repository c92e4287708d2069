package embedded

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"

	"libbioxen/core"
)

// TestTableScanMatchesGopherLua: next on a tableScan visits the entries in
// gopher-lua's order, for array and hash parts, holes, integer keys in the
// hash part and deleted keys, and a key not in the table is Lua's error.
func TestTableScanMatchesGopherLua(t *testing.T) {
	L := lua.NewState()
	defer L.Close()
	if err := L.DoString(`
tables = {
  {}, {1, 2, 3}, {1, nil, 3}, {a = 1, b = 2}, {1, 2, x = "y", [10] = 10, [2.5] = 0},
  (function() local t = {} for i = 1, 100 do t["k" .. i] = i end for i = 1, 100, 3 do t["k" .. i] = nil end return t end)(),
  (function() local t = {1, 2, 3, 4} t[2] = nil t[4] = nil t[1e6] = 1 t[true] = false return t end)(),
}`); err != nil {
		t.Fatal(err)
	}
	tables := L.GetGlobal("tables").(*lua.LTable)
	for i := 1; i <= tables.Len(); i++ {
		tb := tables.RawGetInt(i).(*lua.LTable)
		var want, got []string
		for k, v := tb.Next(lua.LNil); k != lua.LNil; k, v = tb.Next(k) {
			want = append(want, fmt.Sprint(k, "=", v))
		}
		s := tableScan{L: L}
		for k, v, ok := s.next(tb, lua.LNil); ok; k, v, ok = s.next(tb, k) {
			got = append(got, fmt.Sprint(k, "=", v))
		}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("table %d: %v, gopher-lua %v", i, got, want)
		}
	}
	L.SetGlobal("next", L.NewFunction(luaNext))
	for _, code := range []string{`next({10}, 2)`, `next({10}, "x")`, `next({a = 1}, "b")`, `next({}, 0/0)`} {
		if err := L.DoString(code); err == nil || !strings.Contains(err.Error(), "invalid key to 'next'") {
			t.Errorf("%s: %v", code, err)
		}
	}
}

// deletedKeysTable is a table of 3 * scanPoll deleted keys, then one live.
func deletedKeysTable(L *lua.LState) *lua.LTable {
	tb := L.NewTable()
	for i := range 3 * scanPoll {
		k := fmt.Sprint("k", i)
		tb.RawSetString(k, lua.LTrue)
		tb.RawSetString(k, lua.LNil)
	}
	tb.RawSetString("live", lua.LTrue)
	return tb
}

// TestNextPollsOnDeletedKeys: next looking past many deleted keys sees the
// call's stop (gopher-lua's scanned them all in one Go call: 1.2 s for 4
// million, past any deadline).
func TestNextPollsOnDeletedKeys(t *testing.T) {
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer L.Close()
	tb := deletedKeysTable(L)
	L.SetContext(&stopAfter{Context: context.Background(), n: 1})
	L.Push(L.NewFunction(luaNext))
	L.Push(tb)
	if err := L.PCall(1, 2, nil); err == nil || !strings.Contains(err.Error(), "stopped") {
		t.Fatalf("next past %d deleted keys of a stopped call: %v, %v", 3*scanPoll, err, L.Get(-2))
	}
}

// TestFastNextLeavesLongScansToNext: next's fast path (fastNext) looks at
// fastScanSlots slots or keys at most and leaves longer scans to next,
// which polls: a call from Lua and a generic for loop past many deleted
// keys see the call's stop too.
func TestFastNextLeavesLongScansToNext(t *testing.T) {
	for _, code := range []string{`local k = next(t) return k`, `for k in next, t do return k end`} {
		L := lua.NewState(lua.Options{SkipOpenLibs: true})
		tb := deletedKeysTable(L)
		next := L.NewFunction(luaNext)
		next.Fast = fastNext
		L.SetGlobal("next", next)
		L.SetGlobal("t", tb)
		L.SetContext(&stopAfter{Context: context.Background(), n: 1})
		if err := L.DoString(code); err == nil || !strings.Contains(err.Error(), "stopped") {
			t.Errorf("%s past %d deleted keys of a stopped call: %v", code, 3*scanPoll, err)
		}
		L.Close()
	}
}

// TestReturnedSparseTablesStopAtTheDeadline: encoding the returned values
// polls the call's limits. A table with a sparse array part (a million
// empty slots and one value) returned 2,000 times took 26 s past the
// deadline, the VM busy all along and its state thrown away.
func TestReturnedSparseTablesStopAtTheDeadline(t *testing.T) {
	vm := openVM(t, core.Options{Persistent: true})
	if _, err := vm.Exec(context.Background(), []byte(`kept = 1 B = {}
		for i = 1, 2^20 do B[i] = true end
		for i = 1, 2^20 - 1 do B[i] = nil end`), core.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := vm.Exec(context.Background(), []byte(`local out = {} for i = 1, 2000 do out[i] = B end return out`),
		core.ExecOptions{Timeout: 200 * time.Millisecond})
	if core.CodeOf(err) != core.ErrTimeout {
		t.Fatalf("returning 2,000 sparse tables with a 200 ms timeout: %v", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("the call returned after %v", took)
	}
	res, err := vm.Exec(context.Background(), []byte("return kept"), core.ExecOptions{Timeout: 5 * time.Second})
	if err != nil || string(res.Values) != "[1]" {
		t.Fatalf("after the stopped encoding: %v %v (the state was thrown away)", err, res)
	}
}
