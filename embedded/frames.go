package embedded

import (
	"fmt"
	"reflect"
	"unsafe"

	lua "github.com/yuin/gopher-lua"
)

// gopher-lua does not export its call frames (callFrame: Parent, Base,
// TailCall, Fn, Pc) beyond GetStack's opaque Debug, nor a way to close the
// upvalues of the frames an error unwinds. Three things need them:
//   - a traceback in linear time (traceback.go);
//   - closing exactly the unwound frames' upvalues while their registers
//     still hold the values (closeUnwound, errFuncFlag);
//   - refusing a yield that gopher-lua cannot suspend (installCoroutines).
// The frames are read with reflect (reading only; the function pointer is
// converted with unsafe after its type is checked here), closeUpvalues is
// gopher-lua's own through go:linkname, and hasErrorFunc is written at an
// offset checked here. go.mod pins gopher-lua v1.1.2; frameLayoutErr
// reports a changed layout, and the tests fail on it.

// frameFields are the reflect paths of the fields we read.
type frameFields struct {
	frame    []int // Debug.frame (*callFrame)
	parent   []int // callFrame.Parent (*callFrame)
	base     []int // callFrame.Base (int): the registry index of the called function
	tailCall []int // callFrame.TailCall (int)
	fn       []int // callFrame.Fn (*LFunction)
	pc       []int // callFrame.Pc (int): the next instruction
	idx      []int // callFrame.Idx (int): the frame's index in the call stack

	errFunc uintptr // the offset of LState.hasErrorFunc (bool)
}

var frameLayout, frameLayoutErr = func() (f frameFields, err error) {
	field := func(t reflect.Type, name string, kind reflect.Kind) []int {
		sf, ok := t.FieldByName(name)
		if err == nil && (!ok || sf.Type.Kind() != kind) {
			err = fmt.Errorf("gopher-lua's %s.%s is not a %s", t.Name(), name, kind)
		}
		return sf.Index
	}
	dbg := reflect.TypeOf(lua.Debug{})
	f.frame = field(dbg, "frame", reflect.Pointer)
	if err != nil {
		return f, err
	}
	cf := dbg.FieldByIndex(f.frame).Type.Elem()
	f.parent = field(cf, "Parent", reflect.Pointer)
	f.base = field(cf, "Base", reflect.Int)
	f.tailCall = field(cf, "TailCall", reflect.Int)
	f.fn = field(cf, "Fn", reflect.Pointer)
	f.pc = field(cf, "Pc", reflect.Int)
	f.idx = field(cf, "Idx", reflect.Int)
	if sf, ok := reflect.TypeOf(lua.LState{}).FieldByName("hasErrorFunc"); ok && sf.Type.Kind() == reflect.Bool && len(sf.Index) == 1 {
		f.errFunc = sf.Offset
	} else if err == nil {
		err = fmt.Errorf("gopher-lua's LState.hasErrorFunc is not a bool")
	}
	if err == nil && (cf.FieldByIndex(f.parent).Type.Elem() != cf || cf.FieldByIndex(f.fn).Type.Elem() != reflect.TypeOf(lua.LFunction{})) {
		err = fmt.Errorf("gopher-lua's callFrame.Parent or .Fn changed type")
	}
	return f, err
}()

// frame is a *callFrame, read through reflect.
type frame struct{ reflect.Value }

// topFrame is L's running frame (nil when nothing runs).
func topFrame(L *lua.LState) frame {
	dbg, ok := L.GetStack(0)
	if !ok || frameLayoutErr != nil {
		return frame{reflect.ValueOf((*lua.LFunction)(nil))} // IsNil
	}
	return frame{reflect.ValueOf(dbg).Elem().FieldByIndex(frameLayout.frame)}
}

func (f frame) parent() frame  { return frame{f.Elem().FieldByIndex(frameLayout.parent)} }
func (f frame) base() int      { return int(f.Elem().FieldByIndex(frameLayout.base).Int()) }
func (f frame) tailCalls() int { return int(f.Elem().FieldByIndex(frameLayout.tailCall).Int()) }
func (f frame) pc() int        { return int(f.Elem().FieldByIndex(frameLayout.pc).Int()) }
func (f frame) index() int     { return int(f.Elem().FieldByIndex(frameLayout.idx).Int()) }
func (f frame) isG() bool      { return f.fn().IsG }

// fn is the frame's function (the field's type is checked in frameLayout).
func (f frame) fn() *lua.LFunction {
	return (*lua.LFunction)(unsafe.Pointer(f.Elem().FieldByIndex(frameLayout.fn).Pointer()))
}

// calledByVM reports that this Lua frame was called by the VM from inside
// an instruction of its (Lua) caller other than a call: a metamethod, or a
// generic for's iterator. gopher-lua runs those in a nested Go call.
func (f frame) calledByVM() bool {
	up := f.parent()
	if up.IsNil() || up.isG() {
		return false
	}
	code, pc := up.fn().Proto.Code, up.pc()
	if pc < 1 || pc > len(code) {
		return true
	}
	op := int(code[pc-1] >> 26)
	return op != lua.OP_CALL && op != lua.OP_TAILCALL
}

// errFuncFlag is L's hasErrorFunc: whether an error raised now is caught by
// a PCall with a handler. gopher-lua sets it on entering such a PCall and
// clears it on leaving any PCall, so after a nested pcall returned, an error
// raised in the outer protected call closed every active frame's upvalues
// (see closeUnwound). pcallKeepingFlag puts the value back; it is the
// only write.
func errFuncFlag(L *lua.LState) *bool {
	if frameLayoutErr != nil {
		return new(bool)
	}
	return (*bool)(unsafe.Add(unsafe.Pointer(L), frameLayout.errFunc))
}

// closeUpvalues is gopher-lua's (*LState).closeUpvalues: it closes L's open
// upvalues at registry index idx and above, each keeping the value its
// register holds now.
//
//go:linkname closeUpvalues github.com/yuin/gopher-lua.(*LState).closeUpvalues
func closeUpvalues(L *lua.LState, idx int)

// closeUnwound closes the upvalues of the frames an error is unwinding, from
// the error handler, while their registers still hold the values: gopher-lua
// resets those registers before its PCall returns, so closing afterwards
// gave closures made in the failed call nil for their upvalues. Outside an
// error handler gopher-lua instead closes the upvalues of every active
// frame, also those that survive the error (a counter updated by a closure
// stopped counting after any pcall error); that is why every PCall of the
// engine has a handler. protector is the function that called PCall (nil:
// the chunk's own PCall, which unwinds everything); the unwound frames are
// those above its frame.
func closeUnwound(L *lua.LState, protector *lua.LFunction) {
	if protector == nil {
		closeUpvalues(L, 0)
		return
	}
	for fr := topFrame(L); !fr.IsNil(); fr = fr.parent() {
		if up := fr.parent(); !up.IsNil() && up.fn() == protector {
			closeUpvalues(L, fr.base())
			return
		}
	}
}
