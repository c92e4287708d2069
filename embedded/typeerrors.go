package embedded

import (
	"reflect"
	"strings"

	lua "github.com/yuin/gopher-lua"
)

// Lua names the variable in a type error: "attempt to index local 'x' (a
// nil value)", "attempt to call global 'fn' (a nil value)". gopher-lua
// says "attempt to index a non-table object(nil) with key 'y'", "attempt to
// call a non-function object", "__len undefined", "cannot perform add
// operation between number and nil": no name, and no type for calls.
//
// gopher-lua looks for a metamethod before raising those errors, also on
// nil, booleans, numbers and functions (one metatable per type, which Lua
// code cannot reach: getmetatable answers nil for them). Those four types
// share one metatable here whose metamethods raise Lua's error. Each is a
// Go function called by the VM from inside the failing instruction of its
// Lua caller, so it can name the operand as Lua does (getobjname in
// ldebug.c): a local by its debug name; otherwise the instruction that last
// set the operand's register — a global, a field or method of a constant
// name, an upvalue. The error's position is the caller's line, as before.
//
// Tables and userdata keep gopher-lua's words when they have no metatable
// (`{} + {}`, calling a table): the metatable of a table is its own.

// typeErrorMeta builds the shared metatable. arith are the string
// metatable's arithmetic metamethods (stringArith): numbers need them too,
// for a numeral string on the right (`1 + "10"`), and for the other types
// they raise the arithmetic error.
func typeErrorMeta(L *lua.LState, arith *lua.LTable) *lua.LTable {
	mt := L.CreateTable(0, 14) // sized: every VM has one (NewTable reserves 3 KB)
	index := L.NewFunction(typeErrIndex)
	mt.RawSetString("__index", index)
	mt.RawSetString("__newindex", index)
	mt.RawSetString("__call", L.NewFunction(typeErrCall))
	mt.RawSetString("__len", L.NewFunction(typeErrLen))
	cmp := L.NewFunction(typeErrCompare)
	mt.RawSetString("__lt", cmp)
	mt.RawSetString("__le", cmp)
	for _, ev := range []string{"__add", "__sub", "__mul", "__div", "__mod", "__pow", "__unm"} {
		mt.RawSetString(ev, arith.RawGetString(ev))
	}
	for _, v := range []lua.LValue{lua.LNil, lua.LFalse, lua.LNumber(0), L.NewFunction(typeErrCall)} {
		L.SetMetatable(v, mt)
	}
	return mt
}

// isTypeErrorMeta reports whether mt is the shared metatable: getmetatable
// answers nil for it, as Lua does for these types.
func (st *state) isTypeErrorMeta(mt lua.LValue) bool {
	t, ok := mt.(*lua.LTable)
	return ok && t == st.typeErrMt
}

// typeErrIndex is __index and __newindex: "attempt to index <var> (a nil
// value)".
func typeErrIndex(L *lua.LState) int {
	raiseTypeError(L, L.Get(1), "index")
	return 0
}

// typeErrCall is __call: "attempt to call <var> (a nil value)".
func typeErrCall(L *lua.LState) int {
	raiseTypeError(L, L.Get(1), "call")
	return 0
}

// typeErrLen is __len: "attempt to get length of <var> (a nil value)".
func typeErrLen(L *lua.LState) int {
	raiseTypeError(L, L.Get(1), "get length of")
	return 0
}

// typeErrCompare is __lt and __le, reached only for two values of the same
// type (gopher-lua raises itself for mixed types, in Lua's words).
func typeErrCompare(L *lua.LState) int {
	raiseAtCaller(L, "attempt to compare two "+L.Get(1).Type().String()+" values")
	return 0
}

// raiseTypeError raises Lua's "attempt to <op> <kind> '<name>' (a <type>
// value)", or "attempt to <op> a <type> value" when the value has no name
// (a constant, a call's result, a value reached through __index, or a call
// from Go).
func raiseTypeError(L *lua.LState, v lua.LValue, op string) {
	if kind, name := operandName(L, v); name != "" {
		raiseAtCaller(L, "attempt to "+op+" "+kind+" '"+name+"' (a "+v.Type().String()+" value)")
	}
	raiseAtCaller(L, "attempt to "+op+" a "+v.Type().String()+" value")
}

// raiseAtCaller raises msg with the position of the metamethod's caller
// when that is a Lua function, as Lua does for an error of an instruction;
// without a position when Go called (pcall(nil): "attempt to call a nil
// value").
func raiseAtCaller(L *lua.LState, msg string) {
	if caller := topFrame(L); !caller.IsNil() {
		if caller = caller.parent(); !caller.IsNil() && caller.isG() {
			L.Error(lua.LString(msg), 0)
		}
	}
	L.RaiseError("%s", msg)
}

// operandName names v as the operand of the instruction its Lua caller is
// running: the registers the instruction reads, in Lua's order, the first
// that holds v. It returns "" when the caller is Go, the instruction is not
// one that reaches this metamethod, or no register holds v.
func operandName(L *lua.LState, v lua.LValue) (kind, name string) {
	fn, pc, inst, ok := callerInst(L)
	if !ok {
		return "", ""
	}
	op, a, b, c := decode(inst)
	var regs []int
	switch op {
	case lua.OP_CALL, lua.OP_TAILCALL:
		// The VM called __call with the value of register a; GetLocal
		// cannot read it (the metamethod's frame starts there).
		return objName(fn, pc, a)
	case lua.OP_GETTABLE, lua.OP_GETTABLEKS, lua.OP_SELF, lua.OP_UNM, lua.OP_LEN:
		regs = []int{b}
	case lua.OP_SETTABLE, lua.OP_SETTABLEKS:
		regs = []int{a}
	case lua.OP_ADD, lua.OP_SUB, lua.OP_MUL, lua.OP_DIV, lua.OP_MOD, lua.OP_POW, lua.OP_LT, lua.OP_LE:
		for _, r := range []int{b, c} {
			if r&opBitRK == 0 {
				regs = append(regs, r)
			}
		}
	}
	dbg, ok := L.GetStack(1)
	if !ok {
		return "", ""
	}
	for _, r := range regs {
		if _, held := L.GetLocal(dbg, r+1); held == v {
			return objName(fn, pc, r)
		}
	}
	return "", ""
}

// argName names argument i (from 1) of the running Go function by the
// register its Lua caller passed it in (`..`'s operands, concat.go), or ""
// (i is 0, or the caller is not a Lua call instruction).
func argName(L *lua.LState, i int) (kind, name string) {
	fn, pc, inst, ok := callerInst(L)
	if i < 1 || !ok {
		return "", ""
	}
	if op, a, _, _ := decode(inst); op == lua.OP_CALL || op == lua.OP_TAILCALL {
		return objName(fn, pc, a+i)
	}
	return "", ""
}

// callerInst is the instruction the running Go function's caller executes
// (the one that called it, or whose metamethod it is), with the caller's
// function and the instruction's index; ok is false when the caller is Go
// or there is none.
func callerInst(L *lua.LState) (fn *lua.LFunction, pc int, inst uint32, ok bool) {
	caller := topFrame(L)
	if caller.IsNil() {
		return nil, 0, 0, false
	}
	if caller = caller.parent(); caller.IsNil() || caller.isG() {
		return nil, 0, 0, false
	}
	fn, pc = caller.fn(), caller.pc()-1
	if pc < 0 || pc >= len(fn.Proto.Code) {
		return nil, 0, 0, false
	}
	return fn, pc, fn.Proto.Code[pc], true
}

// decode splits a gopher-lua instruction (Lua 5.1's layout: opcode in the
// top 6 bits, then A, C, B; Bx is B and C together).
func decode(inst uint32) (op, a, b, c int) {
	return int(inst >> 26), int(inst>>18) & 0xff, int(inst & 0x1ff), int(inst>>9) & 0x1ff
}

// opBitRK marks an RK operand that is a constant (gopher-lua's opBitRk).
const opBitRK = 1 << 8

// objName is Lua's getobjname for gopher-lua's bytecode: what the value in
// register reg at instruction pc of fn is called ("local", "global",
// "field", "method", "upvalue"), or "" when it has no name. The engine's
// own temporaries (rewrite.go: names starting with "(") are not names; the
// instruction that set them is looked at instead.
func objName(fn *lua.LFunction, pc, reg int) (kind, name string) {
	for depth := 0; depth < 8; depth++ {
		p := fn.Proto
		if n := localName(p, reg, pc); n != "" && !strings.HasPrefix(n, "(") {
			return "local", n
		}
		set := findSetReg(p.Code, pc, reg)
		if set < 0 {
			return "", ""
		}
		inst := p.Code[set]
		op, a, b, c := decode(inst)
		switch op {
		case lua.OP_MOVE, lua.OP_MOVEN:
			if b >= a {
				return "", ""
			}
			pc, reg = set, b // the value came from register b: name that
			continue
		case lua.OP_GETGLOBAL:
			return constName(p, int(inst&0x3ffff), "global")
		case lua.OP_GETTABLE, lua.OP_GETTABLEKS:
			// Lua 5.1 says "field '?'" for a key that is not a constant
			// string.
			if kind, name := rkName(p, c, "field"); name != "" {
				return kind, name
			}
			return "field", "?"
		case lua.OP_SELF:
			return rkName(p, c, "method")
		case lua.OP_GETUPVAL:
			if b < len(p.DbgUpvalues) {
				return "upvalue", p.DbgUpvalues[b]
			}
		}
		return "", ""
	}
	return "", ""
}

// localName is the name of the local in register reg at instruction pc,
// or "". A local is active from its StartPc to its EndPc, both included
// (gopher-lua's LFunction.LocalName misses the first instruction).
func localName(p *lua.FunctionProto, reg, pc int) string {
	for _, l := range p.DbgLocals {
		if l.StartPc > pc {
			break
		}
		if pc <= l.EndPc {
			if reg == 0 {
				return l.Name
			}
			reg--
		}
	}
	return ""
}

// rkName is kind and the string constant of the RK operand rk, or "" when
// rk is a register or its constant is not a string.
func rkName(p *lua.FunctionProto, rk int, kind string) (string, string) {
	if rk&opBitRK == 0 {
		return "", ""
	}
	return constName(p, rk&^opBitRK, kind)
}

// constName is kind and the string constant k, or "" when k is not a string.
func constName(p *lua.FunctionProto, k int, kind string) (string, string) {
	if k < len(p.Constants) {
		if s, ok := p.Constants[k].(lua.LString); ok {
			return kind, string(s)
		}
	}
	return "", ""
}

// findSetReg is the index of the last instruction before lastpc that set
// register reg, or -1 when there is none or it is only conditionally
// reached (a jump lands between it and lastpc): Lua 5.4's findsetreg.
func findSetReg(code []uint32, lastpc, reg int) int {
	setreg, jmptarget := -1, 0
	for pc := 0; pc < lastpc; pc++ {
		inst := code[pc]
		op, a, b, _ := decode(inst)
		change := false
		switch op {
		case lua.OP_LOADNIL:
			change = a <= reg && reg <= b
		case lua.OP_TFORLOOP:
			change = reg >= a+2
		case lua.OP_CALL, lua.OP_TAILCALL, lua.OP_VARARG:
			change = reg >= a
		case lua.OP_SELF:
			change = reg == a || reg == a+1
		case lua.OP_FORLOOP:
			change = reg == a || reg == a+3
		case lua.OP_JMP:
			dest := pc + 1 + int(inst&0x3ffff) - (0x3ffff >> 1)
			if dest <= lastpc && dest > jmptarget {
				jmptarget = dest
			}
		case lua.OP_SETGLOBAL, lua.OP_SETUPVAL, lua.OP_SETTABLE, lua.OP_SETTABLEKS,
			lua.OP_SETLIST, lua.OP_CLOSE, lua.OP_RETURN, lua.OP_EQ, lua.OP_LT,
			lua.OP_LE, lua.OP_TEST, lua.OP_NOP:
		default:
			change = reg == a
		}
		if change {
			setreg = pc
			if pc < jmptarget {
				setreg = -1
			}
		}
	}
	return setreg
}

// hiddenFns are the code of the Go functions that tracebacks do not show:
// the metamethods above, stringArith's and the `..` operator's (Lua raises
// those errors in the instruction itself) and xpcall's error functions
// (Lua calls the handler directly).
var hiddenFns = func() map[uintptr]bool {
	m := map[uintptr]bool{}
	for _, f := range []lua.LGFunction{
		typeErrIndex, typeErrCall, typeErrLen, typeErrCompare, stringArith(nil), stringUnm,
		xpcallRunner(nil, nil, nil, nil), xpcallInner(nil), luaConcat,
	} {
		m[reflect.ValueOf(f).Pointer()] = true
	}
	return m
}()

// hiddenFrame reports whether fn is one of hiddenFns.
func hiddenFrame(fn *lua.LFunction) bool {
	return fn != nil && fn.IsG && hiddenFns[reflect.ValueOf(fn.GFunction).Pointer()]
}
