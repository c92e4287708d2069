package embedded

import (
	"context"
	"strings"
	"testing"
	"time"

	"libbioxen/core"
)

// TestFullCallStackGivesErrorsNotGarbage: with the call stack (20,000
// frames) filled to each of its last frames, a protected call or a Go
// function called in tail position gives its right result or a clean
// "stack overflow": gopher-lua's `return pcall(f)` at the last frame
// returned a function value and 8, and a chain of pcalls made a caller's
// `1 + f(n - 1)` see a function.
func TestFullCallStackGivesErrorsNotGarbage(t *testing.T) {
	vm := openVM(t, core.Options{})
	src := `
local bottoms = {
  pcall = function() return pcall(tostring, 1) end,
  xpcall = function() return xpcall(tostring, print, 1) end,
  pcall_chain = function() local function h() return pcall(h) end local t = {pcall(h)} return #t > 0, "1" end,
  select = function() return select(1, true, "1") end,
  wrap = function() return coroutine.wrap(function() return true, "1" end)() end,
  gsub = function() return true, (string.gsub("a", "a", function() return "1" end)) end,
  index = function() return true, setmetatable({}, {__index = function() return "1" end}).x end,
}
local names = {}
for name in pairs(bottoms) do names[#names + 1] = name end
table.sort(names)
local report = {}
for _, name in ipairs(names) do
  local bottom = bottoms[name]
  local function r(n) if n == 0 then return bottom() end local a, b = r(n - 1) return a, b end
  for d = FROM, TO do
    local ok, a, b = pcall(r, d)
    local fine = (ok and a == true and b == "1")
      or (ok and a == false and type(b) == "string" and b:find("stack overflow"))
      or (not ok and type(a) == "string" and a:find("stack overflow"))
    if not fine then
      report[#report + 1] = name .. " at " .. d .. ": " .. tostring(ok) .. " " .. tostring(a) .. " " .. tostring(b)
    end
  end
end
return table.concat(report, "\n")`
	src = strings.NewReplacer("FROM", "19990", "TO", "20002").Replace(src)
	res, err := vm.Exec(context.Background(), []byte(src), core.ExecOptions{Timeout: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if string(res.Values) != `[""]` {
		t.Errorf("wrong results at a full call stack:\n%s%s", res.Values, res.Stderr)
	}
}

// A full call stack is Lua's "stack overflow", caught or not (gopher-lua
// says "lua callstack overflow"; found by review, red team).
func TestStackOverflowMessage(t *testing.T) {
	vm := openVM(t, core.Options{})
	res, err := vm.Exec(context.Background(), []byte(`local function f() f() end
local ok, msg = pcall(f)
return ok, msg`), core.ExecOptions{})
	if err != nil || string(res.Values) != `[false,"stack overflow"]` {
		t.Fatalf("caught: %v %v", err, res)
	}
	res, err = vm.Exec(context.Background(), []byte(`local function f() return 1 + f() end f()`), core.ExecOptions{})
	if err != nil || res.ErrorMessage != "stack overflow" {
		t.Fatalf("uncaught: %v %+v", err, res)
	}
}
