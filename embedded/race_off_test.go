//go:build !race

package embedded_test

// raceBuild is true under -race (see race_on_test.go).
const raceBuild = false
