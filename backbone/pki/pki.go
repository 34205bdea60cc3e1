// Package pki provides the private certificate authority of the anyedge
// backbone and the mutual TLS 1.3 configurations that edges (pops) and regions
// use on their QUIC connections.
//
// A PKI directory holds ca.crt (one or more CA certificates, PEM), ca.key (only
// on the machine that issues certificates) and, per node, NODE.crt and NODE.key.
// [InitCA] and [Issue] create these files; a [Store] loads them for one node and
// reloads them when they change; [ServerConfig] and [ClientConfig] build the
// tls.Config values that verify every peer against the current CA pool.
// [NewEphemeral] builds the same material in memory for `anyedge dev`.
//
// The same CA issues operator certificates ([IssueOperator]): client
// certificates that name a person and a [Role], which a node's remote admin
// API accepts ([AdminServerConfig], [Store.VerifyOperator]) and the
// backbone refuses.
package pki

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// ALPN is the application protocol negotiated on backbone connections.
const ALPN = "anyedge-backbone/1"

// File names inside a PKI directory.
const (
	// CACertFile holds the trusted CA certificates (PEM, one or more).
	CACertFile = "ca.crt"
	// CAKeyFile holds the CA private key (PEM, PKCS#8).
	CAKeyFile = "ca.key"
)

// Suggested validities for the `anyedge certs` commands.
const (
	// DefaultCAValidity is ten years.
	DefaultCAValidity = 10 * 365 * 24 * time.Hour
	// DefaultNodeValidity is one year.
	DefaultNodeValidity = 365 * 24 * time.Hour
	// DefaultOperatorValidity is 90 days: operator certificates belong to
	// people and should be renewed more often than a node's.
	DefaultOperatorValidity = 90 * 24 * time.Hour
)

// clockSkew is how far before "now" certificates start to be valid, so that
// nodes with slightly late clocks accept a freshly issued certificate.
const clockSkew = 5 * time.Minute

// NodeCertFile returns the path of node's certificate in dir.
func NodeCertFile(dir, node string) string { return filepath.Join(dir, node+".crt") }

// NodeKeyFile returns the path of node's private key in dir.
func NodeKeyFile(dir, node string) string { return filepath.Join(dir, node+".key") }

// ValidNodeName reports whether name can be a node name in a certificate and a
// file name in a PKI directory: a lower-case DNS name — dot-separated labels
// of 1 to 63 characters, each of letters a–z, digits and '-' and neither
// starting nor ending with '-', 253 characters in all — other than "ca".
func ValidNodeName(name string) error { return validName("node", name) }

// ValidOperatorName reports whether name can name an operator: the same
// rule as [ValidNodeName].
func ValidOperatorName(name string) error { return validName("operator", name) }

func validName(kind, name string) error {
	if name == "" {
		return fmt.Errorf("empty %s name", kind)
	}
	if len(name) > 253 {
		return fmt.Errorf("%s name %q longer than 253 characters", kind, name)
	}
	if name == "ca" {
		return fmt.Errorf(`%s name "ca" is reserved for the CA files`, kind)
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("%s name %q: empty label or label longer than 63 characters", kind, name)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("%s name %q: label starts or ends with '-'", kind, name)
		}
		for _, r := range label {
			if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' {
				return fmt.Errorf("%s name %q: only lowercase letters, digits, '-' and '.' are allowed", kind, name)
			}
		}
	}
	return nil
}
