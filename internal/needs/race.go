//go:build race

package needs

// Race is true in a binary built with -race: timing and loss figures do
// not hold under the race detector's instrumentation, so tests keep the
// code paths and leave out such assertions.
const Race = true
