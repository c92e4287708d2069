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

var (
	stmtSlice = reflect.TypeOf([]ast.Stmt(nil))
	exprType  = reflect.TypeOf((*ast.Expr)(nil)).Elem()
)

func rewriteBlock(stmts []ast.Stmt, n *int) []ast.Stmt {
	for i, s := range stmts {
		walkAST(reflect.ValueOf(s), func(b []ast.Stmt) []ast.Stmt { return rewriteBlock(b, n) }, nil)
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
