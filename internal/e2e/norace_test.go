//go:build !race

package e2e

// raceEnabled tells tests that the race detector is on: it makes moving
// bytes about ten times slower, and bulk tests move less.
const raceEnabled = false
