// Package flow is what every flow the edge takes or refuses reports when
// it ends: the flow record (the AWS Global Accelerator flow-log fields), the
// one closed list of close and refusal reasons, and the per-listener Meter
// whose counters the metrics, /status and the dashboard read, and which
// hands each record to an optional non-blocking sink (flow logs).
//
// Both the TCP edge and the UDP forwarder report through a Meter, so that
// a TCP and a UDP listener are counted the same way and a reason means the
// same thing everywhere.
package flow

import (
	"errors"

	"github.com/anyedge/anyedge/backbone/wire"
	"github.com/anyedge/anyedge/edge/router"
)

// Reason says why a flow ended or was refused. The list is closed: a
// reason is added here, never invented at a call site.
type Reason uint8

// Ends of flows that were served.
const (
	// ClientFIN: the client closed its side first and the flow ended
	// cleanly.
	ClientFIN Reason = iota + 1
	// EndpointFIN: the endpoint closed its side first and the flow ended
	// cleanly.
	EndpointFIN
	// ClientReset: the client reset the connection (or writing to it
	// failed).
	ClientReset
	// EndpointReset: the endpoint (or the region on its behalf) reset the
	// flow.
	EndpointReset
	// IdleTimeout: no traffic either way for the listener's idle timeout.
	IdleTimeout
	// BackboneLost: the backbone connection carrying the flow died (and,
	// for UDP, the flow could not be reopened).
	BackboneLost
	// ListenerRemoved: a configuration change removed the listener.
	ListenerRemoved
	// EndpointRemoved: a configuration change removed the endpoint.
	EndpointRemoved
	// Shutdown: the edge stopped (or its drain ended) with the flow open.
	Shutdown
)

// Refusals and failures before a flow was served.
const (
	// NoHealthyEndpoint: no route at all, no reachable region has an
	// endpoint for the flow.
	NoHealthyEndpoint Reason = iota + 32
	// EndpointFailed: every attempt was refused or timed out.
	EndpointFailed
	// ClientAborted: the client gave up while the flow was set up.
	ClientAborted
	// TableFull: the UDP flow table was full.
	TableFull
	// SourceLimit: the client address had its share of flows.
	SourceLimit
	// RateLimited: the client's new-flow rate was over its limit.
	RateLimited
	// ConnLimit: the listener or the process had its most connections.
	ConnLimit
	// ACLDenied: an access rule refused the client.
	ACLDenied
	// RegionOverloaded: every region that could serve the flow answered
	// that it is overloaded.
	RegionOverloaded
	// CustomRoutingDenied: a custom-routing listener has no allowed
	// destination for the flow.
	CustomRoutingDenied
	// TLSFailed: the listener terminates TLS and the client's handshake
	// failed (an unknown server name, no common protocol or ALPN, a
	// timeout, a client that gave up).
	TLSFailed
)

var names = map[Reason]string{
	ClientFIN: "client_fin", EndpointFIN: "endpoint_fin", ClientReset: "client_reset",
	EndpointReset: "endpoint_reset", IdleTimeout: "idle_timeout", BackboneLost: "backbone_lost",
	ListenerRemoved: "listener_removed", EndpointRemoved: "endpoint_removed", Shutdown: "shutdown",
	NoHealthyEndpoint: "no_healthy_endpoint", EndpointFailed: "endpoint_failed",
	ClientAborted: "client_aborted", TableFull: "table_full", SourceLimit: "source_limit",
	RateLimited: "rate_limited", ConnLimit: "conn_limit", ACLDenied: "acl_denied",
	RegionOverloaded: "region_overloaded", CustomRoutingDenied: "custom_routing_denied",
	TLSFailed: "tls_failed",
}

// Reasons lists every reason: the ends of served flows, then the refusals.
var Reasons = []Reason{
	ClientFIN, EndpointFIN, ClientReset, EndpointReset, IdleTimeout, BackboneLost,
	ListenerRemoved, EndpointRemoved, Shutdown,
	NoHealthyEndpoint, EndpointFailed, ClientAborted, TableFull, SourceLimit,
	RateLimited, ConnLimit, ACLDenied, RegionOverloaded, CustomRoutingDenied, TLSFailed,
}

// String returns the reason's name as metrics labels, flow logs and
// /status spell it ("client_fin"); "unknown" for a value not in the list.
func (r Reason) String() string {
	if s, ok := names[r]; ok {
		return s
	}
	return "unknown"
}

// Refused reports whether r is a refusal or failure before the flow was
// served, as opposed to the end of a served flow.
func (r Reason) Refused() bool { return r >= NoHealthyEndpoint }

// Valid reports whether r is in the list.
func (r Reason) Valid() bool { _, ok := names[r]; return ok }

// ParseReason returns the reason named s.
func ParseReason(s string) (Reason, bool) {
	for r, n := range names {
		if n == s {
			return r, true
		}
	}
	return 0, false
}

// MarshalText implements encoding.TextMarshaler: a reason is its name in
// JSON.
func (r Reason) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// index is r's position in counter arrays: 0..len(Reasons)-1.
func (r Reason) index() int {
	if r.Refused() {
		return int(r-NoHealthyEndpoint) + servedReasons
	}
	return int(r - ClientFIN)
}

const (
	servedReasons = int(Shutdown-ClientFIN) + 1
	numReasons    = servedReasons + int(TLSFailed-NoHealthyEndpoint) + 1
)

// SetupFailure is the reason of a flow whose setup failed with err: no
// route at all, every region overloaded, or a failed endpoint.
func SetupFailure(err error) Reason {
	var refused *wire.RefusedError
	switch {
	case errors.Is(err, router.ErrNoRoute):
		return NoHealthyEndpoint
	case errors.As(err, &refused) && refused.Code == wire.CodeOverloaded:
		return RegionOverloaded
	case errors.Is(err, router.ErrDenied), errors.As(err, &refused) && refused.Code == wire.CodeDenied:
		return CustomRoutingDenied
	case errors.Is(err, router.ErrDestinationDown), errors.As(err, &refused) && refused.Code == wire.CodeDestinationDown:
		return NoHealthyEndpoint
	}
	return EndpointFailed
}
