package embedded

import (
	"reflect"
	"slices"
	"strconv"

	lua "github.com/yuin/gopher-lua"
	"github.com/yuin/gopher-lua/ast"
)

// gopher-lua 1.1.2 compiles a multiple assignment by storing each value as
// soon as it is computed, so `a, b = b, a` leaves a == b (upstream issue
// yuin/gopher-lua#440; also t[i], t[j] = t[j], t[i]), and when a value is a
// local it can store another register's value into a global or upvalue
// target (`g, t.x = v, w`). Lua evaluates the targets' tables and keys, then
// every value, then stores. fixMultipleAssignment rewrites each
//
//	x, t[k], ... = e1, e2, ...
//
// into
//
//	do local (o), (k) = t, k; local (t1), (t2), ... = e1, e2, ...; ...; (o)[(k)] = (t2); x = (t1) end
//
// (one store per statement, the last target first, as Lua 5.1 does) before
// compiling, which has Lua's meaning on every compiler. The temporaries'
// names cannot clash with Lua identifiers. It also runs the other AST
// fixes below.
func fixMultipleAssignment(chunk []ast.Stmt) []ast.Stmt {
	n := 0
	return rewriteBlock(chunk, &n)
}

// fixTableConstructors applies adjustTableFields to a chunk (after the ..
// rewrite, whose calls can be table fields too).
func fixTableConstructors(chunk []ast.Stmt) []ast.Stmt {
	walkAST(reflect.ValueOf(chunk), nil, adjustTableFields)
	return chunk
}

// adjustTableFields marks the values of a table constructor that Lua
// truncates to one value (every field's but a last positional one's) as
// such. gopher-lua 1.1.2 decides whether the constructor ends in a
// multiple-value call by its last field even when that field has a key, so
// `{1, k = f()}` stored f()'s result at t[2] as well, and `{..., n = x}`
// took every vararg (Lua 5.1 takes one).
func adjustTableFields(e ast.Expr) ast.Expr {
	walkAST(reflect.ValueOf(e), nil, adjustTableFields)
	t, ok := e.(*ast.TableExpr)
	if !ok {
		return e
	}
	for i, f := range t.Fields {
		if i == len(t.Fields)-1 && f.Key == nil {
			break
		}
		switch x := f.Value.(type) {
		case *ast.FuncCallExpr:
			x.AdjustRet = true
		case *ast.Comma3Expr:
			x.AdjustRet = true
		}
	}
	return e
}

var (
	stmtSlice = reflect.TypeOf([]ast.Stmt(nil))
	exprType  = reflect.TypeOf((*ast.Expr)(nil)).Elem()
)

func rewriteBlock(stmts []ast.Stmt, n *int) []ast.Stmt {
	out := stmts[:0:0]
	for _, s := range stmts {
		walkAST(reflect.ValueOf(s), func(b []ast.Stmt) []ast.Stmt { return rewriteBlock(b, n) }, nil)
		dropParenCall(s)
		switch st := s.(type) {
		case *ast.IfStmt:
			if folded, ok := foldIf(st); ok {
				s = folded
			}
		case *ast.WhileStmt:
			if isFalse(st.Condition) {
				continue // never runs; its condition has no effects
			}
			st.Stmts = guardLoopBody(st.Stmts)
		case *ast.RepeatStmt:
			st.Stmts = guardLoopBody(st.Stmts)
		case *ast.GenericForStmt:
			s = fixGenericFor(st, n)
		case *ast.NumberForStmt:
			s = fixNumberFor(st, n)
		}
		as, ok := s.(*ast.AssignStmt)
		if !ok || (len(as.Lhs) < 2 && !logicalIntoName(as)) {
			out = append(out, s)
			continue
		}
		out = append(out, splitAssignment(as, n))
	}
	return guardLabels(out)
}

// splitAssignment is the rewrite described at fixMultipleAssignment.
func splitAssignment(as *ast.AssignStmt, n *int) ast.Stmt {
	temp := func() (string, *ast.IdentExpr) {
		*n++
		name := "(assign" + strconv.Itoa(*n) + ")"
		id := &ast.IdentExpr{Value: name}
		id.SetLine(as.Line())
		id.SetLastLine(as.LastLine())
		return name, id
	}
	local := func(names []string, exprs []ast.Expr) ast.Stmt {
		st := &ast.LocalAssignStmt{Names: names, Exprs: exprs}
		st.SetLine(as.Line())
		st.SetLastLine(as.LastLine())
		return st
	}
	var stmts []ast.Stmt
	// The targets' tables and keys (constant keys stay constants).
	var prefNames []string
	var prefExprs []ast.Expr
	targets := make([]ast.Expr, len(as.Lhs))
	for j, lhs := range as.Lhs {
		targets[j] = lhs
		ix, ok := lhs.(*ast.AttrGetExpr)
		if !ok {
			continue
		}
		name, obj := temp()
		prefNames, prefExprs = append(prefNames, name), append(prefExprs, ix.Object)
		key := ix.Key
		switch key.(type) {
		case *ast.StringExpr, *ast.NumberExpr:
		default:
			kname, kid := temp()
			prefNames, prefExprs = append(prefNames, kname), append(prefExprs, ix.Key)
			key = kid
		}
		t := &ast.AttrGetExpr{Object: obj, Key: key}
		t.SetLine(ix.Line())
		t.SetLastLine(ix.LastLine())
		targets[j] = t
	}
	if len(prefNames) > 0 {
		stmts = append(stmts, local(prefNames, prefExprs))
	}
	// The values, adjusted to the number of targets.
	names := make([]string, len(as.Lhs))
	vals := make([]ast.Expr, len(as.Lhs))
	for j := range as.Lhs {
		names[j], vals[j] = temp()
	}
	stmts = append(stmts, local(names, as.Rhs))
	// The stores, one per statement, the last target first.
	for j := len(targets) - 1; j >= 0; j-- {
		st := &ast.AssignStmt{Lhs: []ast.Expr{targets[j]}, Rhs: []ast.Expr{vals[j]}}
		st.SetLine(as.Line())
		st.SetLastLine(as.LastLine())
		stmts = append(stmts, st)
	}
	return doBlock(as, stmts...)
}

// doBlock is `do stmts end` at pos's lines.
func doBlock(pos ast.PositionHolder, stmts ...ast.Stmt) *ast.DoBlockStmt {
	block := &ast.DoBlockStmt{Stmts: stmts}
	block.SetLine(pos.Line())
	block.SetLastLine(pos.LastLine())
	return block
}

// logicalIntoName reports `x = a and b` / `x = a or b`: gopher-lua 1.1.2
// compiles an and/or whose short cut leaves a value that is neither a
// comparison nor a local as a test and a jump past the store, so when x is
// an existing local, `x = f() and g()` with f() false left x unchanged
// (upstream #490). Through a temporary (a new local, the register the
// value is computed in) the store is right.
func logicalIntoName(as *ast.AssignStmt) bool {
	if len(as.Lhs) != 1 || len(as.Rhs) == 0 {
		return false
	}
	_, name := as.Lhs[0].(*ast.IdentExpr)
	_, logical := as.Rhs[0].(*ast.LogicalOpExpr)
	return name && logical
}

// gopher-lua 1.1.2's jump-to-jump optimisation follows a jump whose
// target is an earlier jump by reading that jump's already-patched offset
// as a label: a loop whose body starts with a jump lost its back edge, so
// `for k, v in pairs(t) do if false then local x end ... end` ran once and
// corrupted the rest of the chunk (upstream #540). Constant conditions are
// folded away (which is also where most such jumps come from), and a loop
// body or label that still starts with a jump (break, goto) gets a first
// instruction that is not one.

func isFalse(e ast.Expr) bool {
	switch e.(type) {
	case *ast.FalseExpr, *ast.NilExpr:
		return true
	}
	return false
}

func isTrue(e ast.Expr) bool {
	switch e.(type) {
	case *ast.TrueExpr, *ast.NumberExpr, *ast.StringExpr:
		return true
	}
	return false
}

// foldIf replaces `if <constant> then A else B end` by `do A end` or
// `do B end` (elseif chains are nested ifs in Else, folded in turn).
func foldIf(st *ast.IfStmt) (ast.Stmt, bool) {
	switch {
	case isTrue(st.Condition):
		return doBlock(st, st.Then...), true
	case isFalse(st.Condition):
		return doBlock(st, st.Else...), true
	}
	return nil, false
}

// startsWithJump reports a statement list whose first instruction may be
// a jump (conservatively: a condition whose first operand is a constant
// compiles to a jump or to nothing).
func startsWithJump(stmts []ast.Stmt) bool {
	jump, _ := firstInstruction(stmts)
	return jump
}

// firstInstruction looks at the first statement of stmts that emits an
// instruction: jump says it may be a jump (see startsWithJump); empty
// says no statement emits any (labels and blocks of labels only). One
// pass that stops there: testing emptiness and then looking for a jump,
// block by block, was cubic in nested blocks of labels (3,000 of them took
// 27 s to compile).
func firstInstruction(stmts []ast.Stmt) (jump, empty bool) {
	for _, s := range stmts {
		switch st := s.(type) {
		case *ast.LabelStmt:
			continue // emits nothing
		case *ast.DoBlockStmt:
			if j, e := firstInstruction(st.Stmts); !e {
				return j, false
			}
			continue
		case *ast.BreakStmt, *ast.GotoStmt:
			return true, false
		case *ast.IfStmt:
			return constantFirst(st.Condition), false
		case *ast.WhileStmt:
			return constantFirst(st.Condition), false
		case *ast.RepeatStmt:
			j, e := firstInstruction(st.Stmts)
			return j || e, false
		}
		return false, false
	}
	return false, true
}

// constantFirst reports a condition whose leftmost operand is a constant.
func constantFirst(e ast.Expr) bool {
	for {
		switch x := e.(type) {
		case *ast.LogicalOpExpr:
			e = x.Lhs
		case *ast.UnaryNotOpExpr:
			e = x.Expr
		default:
			return isTrue(e) || isFalse(e)
		}
	}
}

// noJump is `local (nojump)`: one LOADNIL into a fresh register.
func noJump(pos ast.PositionHolder) ast.Stmt {
	st := &ast.LocalAssignStmt{Names: []string{"(nojump)"}}
	st.SetLine(pos.Line())
	st.SetLastLine(pos.Line())
	return doBlock(pos, st)
}

func guardLoopBody(stmts []ast.Stmt) []ast.Stmt {
	if len(stmts) > 0 && startsWithJump(stmts) {
		return append([]ast.Stmt{noJump(stmts[0])}, stmts...)
	}
	return stmts
}

// guardLabels puts noJump after a label followed by a jump (a backward
// goto could land on it). The statements after each label are judged from
// the end of the list backwards, so that a run of labels costs one pass,
// not one per label.
func guardLabels(stmts []ast.Stmt) []ast.Stmt {
	if !slices.ContainsFunc(stmts, func(s ast.Stmt) bool { _, ok := s.(*ast.LabelStmt); return ok }) {
		return stmts
	}
	guard := make([]bool, len(stmts))
	guarded := 0
	jumpAfter := false // startsWithJump(stmts[i+1:])
	for i := len(stmts) - 1; i >= 0; i-- {
		if _, ok := stmts[i].(*ast.LabelStmt); ok && jumpAfter {
			guard[i] = true
			guarded++
		}
		if j, empty := firstInstruction(stmts[i : i+1]); !empty {
			jumpAfter = j
		}
	}
	if guarded == 0 {
		return stmts
	}
	out := make([]ast.Stmt, 0, len(stmts)+guarded)
	for i, st := range stmts {
		out = append(out, st)
		if guard[i] {
			out = append(out, noJump(st))
		}
	}
	return out
}

// fixGenericFor makes a generic for's three hidden values right. gopher-lua
// 1.1.2 sizes the assignment of `for names in explist` by the number of
// names instead of 3, so `for k, v in next, t do` kept a stale register as
// the initial control value (after `{1, 2, 3, 4, 5}` it started at 5;
// upstream #514), and a call as the third expression was dropped. The
// explist goes through three locals first, which gopher-lua assigns right:
//
//	do local (f), (s), (c) = explist; for names in (f), (s), (c) do ... end end
//
// The usual `for k, v in pairs(t) do` (one call) compiles right as it is.
func fixGenericFor(st *ast.GenericForStmt, n *int) ast.Stmt {
	st.Stmts = guardLoopBody(st.Stmts)
	if len(st.Exprs) == 1 {
		switch x := st.Exprs[0].(type) {
		case *ast.FuncCallExpr:
			if !x.AdjustRet {
				return st
			}
		case *ast.Comma3Expr:
			if !x.AdjustRet {
				return st
			}
		}
	}
	*n++
	names := make([]string, 3)
	ids := make([]ast.Expr, 3)
	for j, what := range []string{"f", "s", "c"} {
		names[j] = "(for" + what + strconv.Itoa(*n) + ")"
		id := &ast.IdentExpr{Value: names[j]}
		id.SetLine(st.Line())
		id.SetLastLine(st.Line())
		ids[j] = id
	}
	local := &ast.LocalAssignStmt{Names: names, Exprs: st.Exprs}
	local.SetLine(st.Line())
	local.SetLastLine(st.Line())
	st.Exprs = ids
	return doBlock(st, local, st)
}

// fixNumberFor converts a numeric for's initial value, limit and step as
// Lua 5.1's FORPREP does: gopher-lua's accepts numbers only, so `for i = 1,
// n do` with n = "3" raised "for statement limit must be a number", where
// Lua converts numeric strings (and says "'for' limit must be a number"
// for the rest). Unless all three are numerals, they go through one call
// of forNumFn (patched in like concatFn):
//
//	do local (fi), (fl), (fs) = (fornum)(init, limit, step); for name = (fi), (fl), (fs) do ... end end
//
// It costs one Go call per run of the loop, not per iteration.
func fixNumberFor(st *ast.NumberForStmt, n *int) ast.Stmt {
	exprs := []ast.Expr{st.Init, st.Limit}
	if st.Step != nil {
		exprs = append(exprs, st.Step)
	}
	constant := true
	for _, e := range exprs {
		if m, ok := e.(*ast.UnaryMinusOpExpr); ok {
			e = m.Expr
		}
		if _, ok := e.(*ast.NumberExpr); !ok {
			constant = false
		}
	}
	if constant {
		return st
	}
	*n++
	names := make([]string, len(exprs))
	ids := make([]ast.Expr, len(exprs))
	for j := range exprs {
		names[j] = "(for" + "ils"[j:j+1] + strconv.Itoa(*n) + ")"
		id := &ast.IdentExpr{Value: names[j]}
		id.SetLine(st.Line())
		id.SetLastLine(st.Line())
		ids[j] = id
	}
	// Lua reports a bad value at the line of `do` (where the last
	// expression ends, near enough).
	last := exprs[len(exprs)-1]
	line := max(st.Line(), last.Line(), last.LastLine())
	fn := &ast.IdentExpr{Value: forNumName}
	fn.SetLine(line)
	fn.SetLastLine(line)
	// The last bound, as an argument, would pass all the values of a call
	// or `...`: Lua takes its first only.
	switch e := last.(type) {
	case *ast.FuncCallExpr:
		e.AdjustRet = true
	case *ast.Comma3Expr:
		e.AdjustRet = true
	}
	call := &ast.FuncCallExpr{Func: fn, Args: exprs}
	call.SetLine(line)
	call.SetLastLine(line)
	local := &ast.LocalAssignStmt{Names: names, Exprs: []ast.Expr{call}}
	local.SetLine(st.Line())
	local.SetLastLine(st.Line())
	st.Init, st.Limit = ids[0], ids[1]
	if st.Step != nil {
		st.Step = ids[2]
	}
	return doBlock(st, local, st)
}

// forNumName is the placeholder of forNumFn (see concatName).
const forNumName = "(fornum)"

// forNumFn is fixNumberFor's conversion, shared by every state like
// concatFn.
var forNumFn = &lua.LFunction{IsG: true, GFunction: forNum, Env: &lua.LTable{}}

func forNum(L *lua.LState) int {
	n := min(L.GetTop(), 3)
	for i := 1; i <= n; i++ {
		v := L.Get(i)
		if _, ok := v.(lua.LNumber); ok {
			continue
		}
		f, ok := toNumber(L, v)
		if !ok {
			L.RaiseError("'for' %s must be a number", [...]string{"initial value", "limit", "step"}[i-1])
		}
		L.Replace(i, lua.LNumber(f))
	}
	return n
}

// walkAST visits every node below v: it replaces each statement list by
// block(list) and each expression by expr(e), and walks on below the
// others (and below everything when the callback is nil). The callbacks
// walk below the nodes they are given themselves.
func walkAST(v reflect.Value, block func([]ast.Stmt) []ast.Stmt, expr func(ast.Expr) ast.Expr) {
	var children []reflect.Value
	switch v.Kind() {
	case reflect.Interface, reflect.Pointer:
		if !v.IsNil() {
			walkAST(v.Elem(), block, expr)
		}
		return
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if f := v.Field(i); f.CanSet() {
				children = append(children, f)
			}
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			children = append(children, v.Index(i))
		}
	}
	for _, c := range children {
		switch {
		case c.Type() == stmtSlice && block != nil:
			c.Set(reflect.ValueOf(block(c.Interface().([]ast.Stmt))))
		case c.Type() == exprType && expr != nil && !c.IsNil():
			c.Set(reflect.ValueOf(expr(c.Interface().(ast.Expr))))
		default:
			walkAST(c, block, expr)
		}
	}
}

// dropParenCall compiles `x = (f(...))` and `local x = (f(...))` as
// `x = f(...)`, which means the same with one target: gopher-lua 1.1.2
// compiles the parenthesised call into the target's register before the
// arguments are read, so `w = (f(w))` on a parameter w passed f itself
// and left a Go nil behind.
func dropParenCall(s ast.Stmt) {
	var rhs []ast.Expr
	switch st := s.(type) {
	case *ast.AssignStmt:
		if len(st.Lhs) == 1 {
			rhs = st.Rhs
		}
	case *ast.LocalAssignStmt:
		if len(st.Names) == 1 {
			rhs = st.Exprs
		}
	}
	if len(rhs) != 1 {
		return
	}
	switch x := rhs[0].(type) {
	case *ast.FuncCallExpr:
		x.AdjustRet = false
	case *ast.Comma3Expr:
		x.AdjustRet = false
	}
}
