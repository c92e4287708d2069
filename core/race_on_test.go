//go:build race

package core_test

// raceBuild is true under -race, where code runs several times slower and a
// loaded machine can miss the engines' 20 ms stop grace.
const raceBuild = true
