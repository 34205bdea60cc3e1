//go:build !linux

package fec

// segmentSize is 0: GSO exists on Linux only.
func segmentSize([]byte) int { return 0 }

// appendWithoutGSO appends oob unchanged: there is no GSO to remove.
func appendWithoutGSO(dst, oob []byte) []byte { return append(dst, oob...) }
