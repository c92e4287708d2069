//go:build !race

package gotests

const raceBuild = false
