package embedded

import (
	"reflect"
	"strconv"

	"github.com/yuin/gopher-lua/ast"
)

// gopher-lua 1.1.2 compiles a multiple assignment by storing each value as
// soon as it is computed, so `a, b = b, a` leaves a == b (upstream issue
// yuin/gopher-lua#440; also t[i], t[j] = t[j], t[i]). Lua evaluates every
// right-hand value first. fixMultipleAssignment rewrites each
//
//	x1, x2, ... = e1, e2, ...
//
// into
//
//	do local (t1), (t2), ... = e1, e2, ...; x1, x2, ... = (t1), (t2), ... end
//
// before compiling, which has Lua's meaning on every compiler. The
// temporaries' names cannot clash with Lua identifiers.
func fixMultipleAssignment(chunk []ast.Stmt) []ast.Stmt {
	n := 0
	return rewriteBlock(chunk, &n)
}

var stmtSlice = reflect.TypeOf([]ast.Stmt(nil))

func rewriteBlock(stmts []ast.Stmt, n *int) []ast.Stmt {
	for i, s := range stmts {
		walkNode(reflect.ValueOf(s), n)
		dropParenCall(s)
		as, ok := s.(*ast.AssignStmt)
		if !ok || len(as.Lhs) < 2 {
			continue
		}
		names := make([]string, len(as.Lhs))
		temps := make([]ast.Expr, len(as.Lhs))
		for j := range as.Lhs {
			*n++
			names[j] = "(assign" + strconv.Itoa(*n) + ")"
			id := &ast.IdentExpr{Value: names[j]}
			id.SetLine(as.Line())
			id.SetLastLine(as.LastLine())
			temps[j] = id
		}
		local := &ast.LocalAssignStmt{Names: names, Exprs: as.Rhs}
		local.SetLine(as.Line())
		local.SetLastLine(as.LastLine())
		assign := &ast.AssignStmt{Lhs: as.Lhs, Rhs: temps}
		assign.SetLine(as.Line())
		assign.SetLastLine(as.LastLine())
		block := &ast.DoBlockStmt{Stmts: []ast.Stmt{local, assign}}
		block.SetLine(as.Line())
		block.SetLastLine(as.LastLine())
		stmts[i] = block
	}
	return stmts
}

// walkNode visits every statement list below v (function bodies, loop and
// if blocks, functions inside expressions) and rewrites it.
func walkNode(v reflect.Value, n *int) {
	for v.Kind() == reflect.Interface || v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return
		}
		v = v.Elem()
	}
	switch v.Kind() {
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			f := v.Field(i)
			if !f.CanSet() {
				continue
			}
			if f.Type() == stmtSlice {
				f.Set(reflect.ValueOf(rewriteBlock(f.Interface().([]ast.Stmt), n)))
				continue
			}
			walkNode(f, n)
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			walkNode(v.Index(i), n)
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
