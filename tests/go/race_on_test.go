//go:build race

package gotests

// raceBuild is true under -race, where allocating a large slice also maps
// the detector's shadow memory: a single Go call can then exceed the 20 ms
// grace past a deadline that it keeps in a normal build.
const raceBuild = true
