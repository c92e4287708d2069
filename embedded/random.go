package embedded

import (
	"math"
	"math/rand/v2"

	lua "github.com/yuin/gopher-lua"
)

// gopher-lua's math.random draws from math/rand's global generator, which
// every VM of the process shares, and math.randomseed calls rand.Seed,
// which does nothing since Go 1.24: a seed could not make a run
// repeatable. Each state has its own generator instead (PCG). Like Lua
// 5.1's C rand(), it starts from a fixed seed, so a VM that never calls
// math.randomseed gives the same numbers on every run; randomseed(x)
// starts it again from x (truncated to an integer as luaL_checkint does),
// so equal seeds give equal sequences in every VM and run. The numbers are
// not C rand()'s.

// randomSeedStream is the PCG stream every seed uses.
const randomSeedStream = 0x9e3779b97f4a7c15

func newLuaRand(seed int64) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(seed), randomSeedStream))
}

// installRandom replaces math.random and math.randomseed.
func installRandom(L *lua.LState, mathLib *lua.LTable) {
	rng := newLuaRand(0)
	L.SetFuncs(mathLib, map[string]lua.LGFunction{
		// random(): [0, 1); random(u): [1, u]; random(l, u): [l, u]. Bounds
		// are truncated to integers, as luaL_checkint does.
		"random": func(L *lua.LState) int {
			r := rng.Float64()
			switch L.GetTop() {
			case 0:
				L.Push(lua.LNumber(r))
			case 1:
				u := argInt(L, 1)
				if u < 1 {
					L.ArgError(1, "interval is empty")
				}
				L.Push(lua.LNumber(math.Floor(r*float64(u)) + 1))
			case 2:
				l, u := argInt(L, 1), argInt(L, 2)
				if l > u {
					L.ArgError(2, "interval is empty")
				}
				L.Push(lua.LNumber(math.Floor(r*(float64(u)-float64(l)+1)) + float64(l)))
			default:
				L.RaiseError("wrong number of arguments")
			}
			return 1
		},
		"randomseed": func(L *lua.LState) int {
			rng = newLuaRand(int64(argInt(L, 1)))
			return 0
		},
	})
}
