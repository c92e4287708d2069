//go:build race

package luatest

// raceBuild is true under -race, where gopher-lua runs about ten times
// slower: the package tests then run in one configuration only.
const raceBuild = true
