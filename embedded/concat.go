package embedded

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	lua "github.com/yuin/gopher-lua"
	"github.com/yuin/gopher-lua/ast"
)

// The `..` operator. gopher-lua's writes numbers Go's way (1/3 .. "" is
// "0.3333333333333333", 1e15 .. "" is "1000000000000000", 1/0 .. "" is
// "+Inf") and says "cannot perform concat operation between string and
// nil". Before compiling, rewriteConcat turns every chain a .. b .. c into
// a call of concatFn with the operands, which writes numbers as tostring
// does (%.14g) and raises Lua's "attempt to concatenate local 'x' (a nil
// value)".
// After compiling, the global read of its placeholder name is patched into
// a constant load of concatFn (patchConcat), so no global is involved.
// Semantics kept: operands are evaluated left to right, each truncated to
// one value; concatenation, and __concat metamethods, go right to left;
// a parenthesised left operand, (a .. b) .. c, is concatenated first.

// concatName is the placeholder: not an identifier, so no Lua name can
// clash with it.
const concatName = "(concat)"

// concatFn is shared by every state (compiled chunks are cached across
// states): a Go function that uses nothing of the state it is called in
// but its arguments. Its environment is never read.
var concatFn = &lua.LFunction{IsG: true, GFunction: luaConcat, Env: &lua.LTable{}}

// rewriteConcat rewrites the `..` chains of a parsed chunk in place.
func rewriteConcat(chunk []ast.Stmt) []ast.Stmt {
	walkAST(reflect.ValueOf(chunk), nil, concatExpr)
	return chunk
}

// concatExpr is e with its `..` chains rewritten.
func concatExpr(e ast.Expr) ast.Expr {
	c, ok := e.(*ast.StringConcatOpExpr)
	if !ok {
		walkAST(reflect.ValueOf(e), nil, concatExpr)
		return e
	}
	// a .. b .. c parses as a .. (b .. c): collect the right spine.
	var ops []ast.Expr
	for {
		ops = append(ops, c.Lhs)
		next, ok := c.Rhs.(*ast.StringConcatOpExpr)
		if !ok {
			ops = append(ops, c.Rhs)
			break
		}
		c = next
	}
	allConst := true
	for i, op := range ops {
		op = concatExpr(op)
		switch x := op.(type) {
		case *ast.NumberExpr:
			// Written now exactly as concatFn would write it.
			if f, ok := str2number(x.Value); ok {
				s := &ast.StringExpr{Value: fmtNumber(lua.LNumber(f))}
				s.SetLine(x.Line())
				s.SetLastLine(x.LastLine())
				op = s
			}
		case *ast.FuncCallExpr:
			x.AdjustRet = true // one value, as an operand of .. has
		case *ast.Comma3Expr:
			x.AdjustRet = true
		}
		if _, ok := op.(*ast.StringExpr); !ok {
			allConst = false
		}
		ops[i] = op
	}
	first := e.(*ast.StringConcatOpExpr)
	if allConst {
		var b strings.Builder
		for _, op := range ops {
			b.WriteString(op.(*ast.StringExpr).Value)
		}
		s := &ast.StringExpr{Value: b.String()}
		s.SetLine(first.Line())
		s.SetLastLine(first.LastLine())
		return s
	}
	fn := &ast.IdentExpr{Value: concatName}
	fn.SetLine(first.Line())
	fn.SetLastLine(first.LastLine())
	call := &ast.FuncCallExpr{Func: fn, Args: ops}
	call.SetLine(first.Line())
	call.SetLastLine(first.LastLine())
	return call
}

// patchConcat turns the reads of the global concatName in proto and its
// nested functions into loads of concatFn, and those of forNumName into
// loads of forNumFn; false if one was left (the compiler emitted something
// else: the chunk must not run).
func patchConcat(proto *lua.FunctionProto) bool {
	return patchGlobal(proto, concatName, concatFn) && patchGlobal(proto, forNumName, forNumFn)
}

// patchGlobal turns the reads of the global placeholder in proto and its
// nested functions into loads of fn; false if one was left.
func patchGlobal(proto *lua.FunctionProto, placeholder string, fnValue *lua.LFunction) bool {
	name := -1
	for i, k := range proto.Constants {
		if s, ok := k.(lua.LString); ok && string(s) == placeholder {
			name = i
			break
		}
	}
	ok := true
	if name >= 0 {
		fn := len(proto.Constants)
		proto.Constants = append(proto.Constants, fnValue)
		for pc, inst := range proto.Code {
			if int(inst>>26) == lua.OP_GETGLOBAL && int(inst&0x3ffff) == name {
				proto.Code[pc] = uint32(lua.OP_LOADK)<<26 | inst&0x03fc0000 | uint32(fn)
			}
		}
		for _, inst := range proto.Code {
			if int(inst>>26) == lua.OP_GETGLOBAL && int(inst&0x3ffff) == name {
				ok = false
			}
		}
	}
	for _, p := range proto.FunctionPrototypes {
		ok = patchGlobal(p, placeholder, fnValue) && ok
	}
	return ok
}

// luaConcat concatenates its arguments as Lua's `..` does. A result over
// maxStringBytes is an error before anything is allocated, as for the
// builtins that build strings.
func luaConcat(L *lua.LState) int {
	n := L.GetTop()
	if n == 2 { // the common a .. b: one allocation for the bytes
		if a, ok := L.Get(1).(lua.LString); ok {
			if b, ok := L.Get(2).(lua.LString); ok && len(a)+len(b) <= pollWork {
				L.Push(a + b)
				return 1
			}
		}
	}
	size, simple := 0, true
	for i := 1; i <= n; i++ {
		switch v := L.Get(i).(type) {
		case lua.LString:
			size += len(v)
		case lua.LNumber:
			size += 24
		default:
			simple = false
		}
	}
	if simple {
		if size > maxStringBytes {
			exactConcatSize(L, n)
		}
		var b strings.Builder
		b.Grow(size)
		tk := workTicker{L: L}
		for i := 1; i <= n; i++ {
			switch v := L.Get(i).(type) {
			case lua.LString:
				writePolled(&b, &tk, string(v))
			case lua.LNumber:
				b.WriteString(fmtNumber(v))
			}
		}
		L.Push(lua.LString(b.String()))
		return 1
	}
	// Right to left, with __concat for a pair that is not two strings or
	// numbers.
	acc, accArg := L.Get(n), n // accArg: the argument acc is, or 0
	for i := n - 1; i >= 1; i-- {
		lhs := L.Get(i)
		if a, ok := luaString(lhs); ok {
			if b, ok := luaString(acc); ok {
				if len(a)+len(b) > maxStringBytes {
					tooLong(L, "string concatenation")
				}
				acc = lua.LString(joinPolled(L, a, b))
				continue
			}
		}
		mm := L.GetMetaField(lhs, "__concat")
		if mm == lua.LNil {
			mm = L.GetMetaField(acc, "__concat")
		}
		if mm == lua.LNil {
			bad, arg := lhs, i
			if _, ok := luaString(lhs); ok {
				bad, arg = acc, accArg
			}
			what := "a " + bad.Type().String() + " value"
			if kind, name := argName(L, arg); name != "" {
				what = kind + " '" + name + "' (" + what + ")"
			}
			L.RaiseError("attempt to concatenate %s", what)
		}
		L.Push(mm)
		L.Push(lhs)
		L.Push(acc)
		L.Call(2, 1)
		acc, accArg = L.Get(-1), 0
		L.Pop(1)
	}
	L.Push(acc)
	return 1
}

// compileTree compiles a parsed chunk with the engine's rewrites
// (multiple assignment, `..`).
//
// Its errors are *syntaxError, with name and line in the message.
var missingLabel = regexp.MustCompile(`^no visible label '.*' for <goto> at line (\d+)$`)

func compileTree(tree []ast.Stmt, name string) (proto *lua.FunctionProto, err error) {
	if line, ok := syntaxDepthOK(tree); !ok {
		return nil, &syntaxError{msg: fmt.Sprintf("%s:%d: chunk has too many syntax levels (limit %d)", name, line, maxSyntaxDepth)}
	}
	proto, err = lua.Compile(fixTableConstructors(rewriteConcat(fixMultipleAssignment(fixNumerals(tree)))), name)
	if err != nil {
		var ce *lua.CompileError
		if errors.As(err, &ce) { // (its Error method needs a context it does not always have)
			line := ce.Line
			// A goto without its label is reported at the goto, as LuaJIT
			// does (gopher-lua named the line after the function's end).
			if m := missingLabel.FindStringSubmatch(ce.Message); m != nil {
				line, _ = strconv.Atoi(m[1])
			}
			return nil, &syntaxError{msg: fmt.Sprintf("%s:%d: %s", name, line, ce.Message)}
		}
		return nil, &syntaxError{msg: name + ": " + err.Error()}
	}
	if !patchConcat(proto) {
		return nil, &syntaxError{msg: name + ": internal error: the .. operator was not compiled as expected"}
	}
	clipProto(proto)
	return proto, nil
}

// clipProto copies the slices of proto and its nested prototypes to their
// length: gopher-lua's compiler leaves room for 1,024 instructions and
// line numbers in each (about 12 KB a function), which the memory limit
// charges (found by review: 20,000 small loadstring chunks went over a
// 64 MiB limit).
func clipProto(proto *lua.FunctionProto) {
	todo := []*lua.FunctionProto{proto}
	for len(todo) > 0 {
		p := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		p.Code = slices.Clone(p.Code)
		p.Constants = slices.Clone(p.Constants)
		p.FunctionPrototypes = slices.Clone(p.FunctionPrototypes)
		p.DbgSourcePositions = slices.Clone(p.DbgSourcePositions)
		p.DbgLocals = slices.Clone(p.DbgLocals)
		p.DbgCalls = slices.Clone(p.DbgCalls)
		p.DbgUpvalues = slices.Clone(p.DbgUpvalues)
		todo = append(todo, p.FunctionPrototypes...)
	}
}

// maxSyntaxDepth bounds how deeply statements and expressions nest. The
// parser builds the tree without recursion, but compiling it recurses once
// per level (about 1 KB of Go stack each): `return 1 + 1 + ... + 1` with
// two million terms (8 MB of source) overflowed Go's 1 GB stack, which
// kills the process. Lua 5.1 stops nested blocks and parentheses at 200
// levels ("chunk has too many syntax levels") but not left-associative
// chains such as that sum; this limit accepts both up to 10,000.
const maxSyntaxDepth = 10000

// syntaxDepthOK walks tree without recursion; false, with a line, when it
// nests deeper than maxSyntaxDepth.
func syntaxDepthOK(tree []ast.Stmt) (int, bool) {
	type item struct {
		v     reflect.Value
		depth int
	}
	stack := []item{{reflect.ValueOf(tree), 0}}
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		v, d := it.v, it.depth
		switch v.Kind() {
		case reflect.Interface: // an ast.Expr or ast.Stmt: one level
			if v.IsNil() {
				continue
			}
			if d+1 > maxSyntaxDepth {
				line := 0
				if p, ok := v.Interface().(ast.PositionHolder); ok {
					line = p.Line()
				}
				return line, false
			}
			stack = append(stack, item{v.Elem(), d + 1})
		case reflect.Pointer:
			if !v.IsNil() {
				stack = append(stack, item{v.Elem(), d})
			}
		case reflect.Struct:
			for i := 0; i < v.NumField(); i++ {
				if f := v.Field(i); f.CanSet() {
					stack = append(stack, item{f, d})
				}
			}
		case reflect.Slice:
			for i := 0; i < v.Len(); i++ {
				stack = append(stack, item{v.Index(i), d})
			}
		}
	}
	return 0, true
}

// writePolled appends s to b in pieces, polling the call's limits between
// them: copying a 256 MiB result into fresh memory took 0.45 s, which no
// deadline could stop. A long s gets its room first, and when b holds much
// already, its bytes move to the new room in pieces too (b's own growth
// copies them in one Go call: 0.5 s for 128 MiB at worst).
func writePolled(b *strings.Builder, tk *workTicker, s string) {
	if len(s) > pollWork {
		growBuilder(b, tk, len(s))
	}
	for len(s) > pollWork {
		b.WriteString(s[:pollWork])
		s = s[pollWork:]
		tk.add(pollWork)
	}
	b.WriteString(s)
	tk.add(len(s))
}

// grownCap is the capacity a buffer of capacity c grows to when it needs n
// bytes: twice c, as append grows one, within maxStringBytes, and n at
// least.
func grownCap(c, n int) int {
	return max(n, min(2*c, maxStringBytes))
}

// growBuilder gives b room for n more bytes. When b holds much, its bytes
// move to the new room in pieces of pollWork bytes, with polls of the
// call's limits between them: b's own growth copies them in one Go call
// (up to 0.5 s for 128 MiB into fresh memory on a 2-core VM). The room is
// not zeroed first (strings.Builder's), unlike a make([]byte): zeroing a
// reused 256 MiB took up to 0.9 s.
func growBuilder(b *strings.Builder, tk *workTicker, n int) {
	if b.Cap()-b.Len() >= n {
		return
	}
	regrow(b, n, n, func(k int) bool { tk.add(k); return true })
}

// regrow gives b room for n more bytes: Grow(small) while b holds little;
// else room for grownCap, into which b's bytes move in pieces of pollWork,
// add(k) counting each piece (it polls the call's limits). False when add
// does, which leaves b partly copied.
func regrow(b *strings.Builder, n, small int, add func(int) bool) bool {
	if b.Len() <= pollWork {
		b.Grow(small)
		return true
	}
	c, old := b.Cap(), b.String() // b's bytes, not copied
	b.Reset()
	b.Grow(grownCap(c, len(old)+n))
	for len(old) > 0 {
		k := min(len(old), pollWork)
		b.WriteString(old[:k])
		old = old[k:]
		if !add(k) {
			return false
		}
	}
	return true
}

// joinPolled is a + b, polling the call's limits when it is large.
func joinPolled(L *lua.LState, a, b string) string {
	if len(a)+len(b) <= pollWork {
		return a + b
	}
	var sb strings.Builder
	sb.Grow(len(a) + len(b))
	tk := workTicker{L: L}
	writePolled(&sb, &tk, a)
	writePolled(&sb, &tk, b)
	return sb.String()
}

// exactConcatSize raises the too-large error unless the n operands (strings
// and numbers), with the numbers written out, fit in maxStringBytes.
func exactConcatSize(L *lua.LState, n int) {
	size := 0
	for i := 1; i <= n; i++ {
		s, _ := luaString(L.Get(i))
		size += len(s)
	}
	if size > maxStringBytes {
		tooLong(L, "string concatenation")
	}
}
