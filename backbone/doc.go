// Package backbone is the QUIC transport between edges and regions: a pool
// of warm, mutually authenticated connections per region on the edge side
// (Client), the listening side in a region (Server), and the per-connection
// control stream that carries hello, health and load messages.
//
// The stream and datagram layout lives in backbone/wire; joining a TCP
// connection to a stream in backbone/splice; certificates in backbone/pki.
// docs/backbone-protocol.md describes the protocol as a whole.
package backbone
