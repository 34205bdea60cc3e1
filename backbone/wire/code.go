package wire

import (
	"fmt"

	"github.com/quic-go/quic-go"
)

// Code is the region's one-byte answer to a stream header: OK, or why the
// flow was refused. The edge may retry elsewhere on any code but CodeOK.
type Code uint8

// Answer codes.
const (
	CodeOK Code = iota
	// CodeBadHeader: the header could not be decoded.
	CodeBadHeader
	// CodeUnknownEndpoint: the region has no endpoint with that ID.
	CodeUnknownEndpoint
	// CodeNotAllowed: the listener port does not belong to the endpoint's
	// listener, or the stream kind is not served.
	CodeNotAllowed
	// CodeDialRefused: the endpoint refused the connection.
	CodeDialRefused
	// CodeDialTimeout: the endpoint did not answer in time.
	CodeDialTimeout
	// CodeDialFailed: any other dial failure (unreachable, reset).
	CodeDialFailed
	// CodeOverloaded: the region refused the flow for lack of resources.
	CodeOverloaded
	// CodeDraining: the region is shutting down.
	CodeDraining
	// CodeDenied: custom routing traffic to the destination is not
	// allowed (or the destination port does not serve the stream's
	// protocol).
	CodeDenied
	// CodeDestinationDown: a custom routing destination failed its probe
	// or its last dial; the region refuses it without dialling.
	CodeDestinationDown
)

var codeNames = [...]string{
	CodeOK:              "ok",
	CodeBadHeader:       "bad header",
	CodeUnknownEndpoint: "unknown endpoint",
	CodeNotAllowed:      "not allowed",
	CodeDialRefused:     "endpoint refused connection",
	CodeDialTimeout:     "endpoint dial timeout",
	CodeDialFailed:      "endpoint dial failed",
	CodeOverloaded:      "region overloaded",
	CodeDraining:        "region draining",
	CodeDenied:          "custom routing denied",
	CodeDestinationDown: "destination down",
}

// String names the code for logs and metric labels.
func (c Code) String() string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return fmt.Sprintf("code(%d)", uint8(c))
}

var codeLabels = [...]string{
	CodeOK:              "ok",
	CodeBadHeader:       "bad_header",
	CodeUnknownEndpoint: "unknown_endpoint",
	CodeNotAllowed:      "not_allowed",
	CodeDialRefused:     "dial_refused",
	CodeDialTimeout:     "dial_timeout",
	CodeDialFailed:      "dial_failed",
	CodeOverloaded:      "overloaded",
	CodeDraining:        "draining",
	CodeDenied:          "denied",
	CodeDestinationDown: "destination_down",
}

// Label names the code in snake_case for metric labels and status keys.
func (c Code) Label() string {
	if int(c) < len(codeLabels) {
		return codeLabels[c]
	}
	return fmt.Sprintf("code_%d", uint8(c))
}

// RefusedError is the edge's error for a flow the region refused.
type RefusedError struct{ Code Code }

// Error implements error.
func (e *RefusedError) Error() string { return "region refused flow: " + e.Code.String() }

// Stream error codes carried by RESET_STREAM and STOP_SENDING.
const (
	// StreamReset mirrors a TCP reset on the far side.
	StreamReset quic.StreamErrorCode = 1
	// StreamIdle: the flow was closed for idleness.
	StreamIdle quic.StreamErrorCode = 2
	// StreamShutdown: the node is shutting down.
	StreamShutdown quic.StreamErrorCode = 3
	// StreamEndpointRemoved: a reload of the region's configuration
	// removed the flow's endpoint (or custom routing subnet). An edge
	// that does not know the code takes it as a reset.
	StreamEndpointRemoved quic.StreamErrorCode = 4
)

// Connection close codes carried by CONNECTION_CLOSE.
const (
	// ConnShutdown: a clean shutdown of the node.
	ConnShutdown quic.ApplicationErrorCode = 0
	// ConnProtocol: the peer broke the protocol.
	ConnProtocol quic.ApplicationErrorCode = 1
	// ConnStreamLimit: the peer opened streams faster than allowed.
	ConnStreamLimit quic.ApplicationErrorCode = 2
	// ConnRetired: the edge retired the connection (its path's RTT rose
	// far above the minimum it measured at its handshake) and moved new
	// flows to a replacement; the flows it carried have ended or reached
	// the edge's drain limit.
	ConnRetired quic.ApplicationErrorCode = 3
)
