//go:build race

package embedded_test

// raceBuild is true under -race, where gopher-lua runs about ten times
// slower: the long Lua comparisons then run in one configuration only.
const raceBuild = true
