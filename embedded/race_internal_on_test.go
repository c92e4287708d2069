//go:build race

package embedded

// raceEnabled is true under -race, where gopher-lua runs about ten times
// slower (raceBuild in race_on_test.go is the same for package
// embedded_test).
const raceEnabled = true
