//go:build !linux

package bgp

// md5Supported leaves the check to GoBGP outside Linux.
func md5Supported() error { return nil }
