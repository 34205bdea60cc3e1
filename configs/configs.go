// Package configs ships the example configurations; the quickstart is
// embedded in the binary for `anyedge dev`.
package configs

import _ "embed"

// Quickstart is configs/quickstart.yaml: one edge, one region and two demo
// HTTP endpoints on 127.0.0.1.
//
//go:embed quickstart.yaml
var Quickstart []byte
