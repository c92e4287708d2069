//go:build !race

package embedded

// raceEnabled is true under -race (see race_internal_on_test.go).
const raceEnabled = false
