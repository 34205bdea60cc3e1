package flow

import (
	"net/netip"
	"sync/atomic"
	"time"
)

// Listener names the listener a Meter counts for; its fields are the
// labels of the listener's metrics.
type Listener struct {
	// Key is the listener key "accelerator/protocol/firstport".
	Key string
	// Accelerator is the accelerator's name.
	Accelerator string
	// Protocol is "tcp" or "udp".
	Protocol string
}

// Record is one finished or refused flow: the AWS Global Accelerator
// flow-log fields that the edge knows. Fields that do not apply (no
// endpoint was chosen, a refused flow moved no byte) are zero.
type Record struct {
	// Listener, Accelerator and Protocol are filled in by the Meter.
	Listener, Accelerator, Protocol string
	// Client is the client's address and port; AcceleratorAddr the
	// accelerator address and port it reached.
	Client, AcceleratorAddr netip.AddrPort
	// Region and Endpoint are the region and endpoint ID that served the
	// flow (the last one tried for a flow that failed); empty when none
	// was chosen.
	Region, Endpoint string
	// BytesIn and PacketsIn count what the client sent, BytesOut and
	// PacketsOut what it was sent. TCP packets are the segments the edge's
	// socket received and sent (TCP_INFO), pure acknowledgements included.
	BytesIn, BytesOut, PacketsIn, PacketsOut uint64
	// Start and End are when the edge took the flow and when it ended.
	Start, End time.Time
	// Reason is why the flow ended or was refused.
	Reason Reason
}

// Sink receives every record a Meter reports. Flow must not block and
// must not keep anything that r points to beyond its fields' values (r is
// a copy; its strings are immutable).
type Sink interface {
	Flow(r Record)
}

// Place says where a UDP packet was dropped.
type Place uint8

const (
	// EdgeQueue: the flow's queue at the edge was full while its stream
	// opened, or the opening failed with packets queued.
	EdgeQueue Place = iota
	// Backbone: the packet could not be handed to the backbone (the send
	// failed), or a reply from a region named no open flow.
	Backbone
	numPlaces
)

// String returns the place's label value.
func (p Place) String() string {
	switch p {
	case EdgeQueue:
		return "edge_queue"
	case Backbone:
		return "backbone"
	}
	return "unknown"
}

// Places lists every place an edge drops UDP packets.
var Places = []Place{EdgeQueue, Backbone}

// cacheLine pads counters written by different goroutines (the client
// reader and the backbone reader of UDP) apart.
type cacheLine [64]byte

// Meter counts the flows of one listener. Its methods are safe for
// concurrent use, take no lock and allocate nothing: per packet or per
// chunk an atomic add, per flow a handful. The zero value is not usable;
// use NewMeter.
type Meter struct {
	l    Listener
	sink atomic.Pointer[sinkBox]

	opened, active atomic.Int64
	ends           [numReasons]atomic.Uint64
	retries        atomic.Uint64
	hedges         atomic.Uint64
	early          atomic.Uint64

	_           cacheLine
	bytesIn     atomic.Uint64
	packetsIn   atomic.Uint64
	datagramsIn atomic.Uint64 // UDP: client packets carried as datagrams
	fallbackIn  atomic.Uint64 // UDP: client packets that took the stream
	drops       [numPlaces]atomic.Uint64

	_            cacheLine
	bytesOut     atomic.Uint64
	packetsOut   atomic.Uint64
	datagramsOut atomic.Uint64 // UDP: replies that came as datagrams
	fallbackOut  atomic.Uint64 // UDP: replies that came on the stream
}

type sinkBox struct{ s Sink }

// NewMeter returns a Meter for l that hands records to sink (nil: none).
func NewMeter(l Listener, sink Sink) *Meter {
	m := &Meter{l: l}
	m.SetSink(sink)
	return m
}

// Listener returns the listener the meter counts for.
func (m *Meter) Listener() Listener { return m.l }

// SetSink replaces the sink (nil: none). Records reported meanwhile go to
// either.
func (m *Meter) SetSink(s Sink) {
	if s == nil {
		m.sink.Store(nil)
		return
	}
	m.sink.Store(&sinkBox{s})
}

// Open counts a new flow the edge has taken; exactly one End follows.
func (m *Meter) Open() {
	m.opened.Add(1)
	m.active.Add(1)
}

// End reports a flow that Open counted, with its reason (a refusal reason
// for a flow that failed during setup).
func (m *Meter) End(r Record) {
	m.active.Add(-1)
	m.report(r)
}

// Refuse reports a flow refused before it was taken (Open was not
// called): table_full, source_limit and the like.
func (m *Meter) Refuse(r Record) { m.report(r) }

func (m *Meter) report(r Record) {
	if !r.Reason.Valid() {
		panic("flow: reason " + r.Reason.String() + " is not in the list")
	}
	m.ends[r.Reason.index()].Add(1)
	if b := m.sink.Load(); b != nil {
		r.Listener, r.Accelerator, r.Protocol = m.l.Key, m.l.Accelerator, m.l.Protocol
		b.s.Flow(r)
	}
}

// Active returns the number of flows taken and not ended yet.
func (m *Meter) Active() int64 { return m.active.Load() }

// In counts n bytes in one packet from a client.
func (m *Meter) In(n int) {
	m.packetsIn.Add(1)
	m.bytesIn.Add(uint64(n))
}

// Out counts n bytes in one packet to a client.
func (m *Meter) Out(n int) {
	m.packetsOut.Add(1)
	m.bytesOut.Add(uint64(n))
}

// BytesIn and BytesOut are the counters of bytes from and to clients,
// for copy loops that add as they go (TCP).
func (m *Meter) BytesIn() *atomic.Uint64 { return &m.bytesIn }

// BytesOut: see BytesIn.
func (m *Meter) BytesOut() *atomic.Uint64 { return &m.bytesOut }

// Packets adds packet counts known only at a flow's end (TCP).
func (m *Meter) Packets(in, out uint64) {
	m.packetsIn.Add(in)
	m.packetsOut.Add(out)
}

// Retry counts an extra attempt after a failure; Hedge an extra attempt
// started because an answer was slow; Early a flow that sent client bytes
// with its setup.
func (m *Meter) Retry() { m.retries.Add(1) }

// Hedge: see Retry.
func (m *Meter) Hedge() { m.hedges.Add(1) }

// Early: see Retry.
func (m *Meter) Early() { m.early.Add(1) }

// DatagramIn counts a client packet carried as a datagram; FallbackIn one
// that took the flow's stream; DatagramOut and FallbackOut the same for
// replies.
func (m *Meter) DatagramIn() { m.datagramsIn.Add(1) }

// FallbackIn: see DatagramIn.
func (m *Meter) FallbackIn() { m.fallbackIn.Add(1) }

// DatagramOut: see DatagramIn.
func (m *Meter) DatagramOut() { m.datagramsOut.Add(1) }

// FallbackOut: see DatagramIn.
func (m *Meter) FallbackOut() { m.fallbackOut.Add(1) }

// Drop counts n UDP packets dropped at p.
func (m *Meter) Drop(p Place, n int) { m.drops[p].Add(uint64(n)) }

// Counters is a snapshot of a Meter.
type Counters struct {
	// Flows counts flows taken (Open), Active those not ended yet.
	Flows, Active int64
	// BytesIn, PacketsIn: from clients; BytesOut, PacketsOut: to clients.
	BytesIn, BytesOut, PacketsIn, PacketsOut uint64
	// Retries, Hedges and EarlyData count extra attempts and early-data
	// flows (TCP).
	Retries, Hedges, EarlyData uint64
	// DatagramsIn, DatagramsOut, FallbackIn and FallbackOut count UDP
	// packets by how the backbone carried them.
	DatagramsIn, DatagramsOut, FallbackIn, FallbackOut uint64
	// Ends counts every reported flow by reason, indexed like Reasons.
	Ends [numReasons]uint64
	// Dropped counts UDP packets dropped, indexed by Place.
	Dropped [numPlaces]uint64
}

// Ended returns the count of flows that ended with r.
func (c Counters) Ended(r Reason) uint64 {
	if !r.Valid() {
		return 0
	}
	return c.Ends[r.index()]
}

// Snapshot returns the meter's counters.
func (m *Meter) Snapshot() Counters {
	c := Counters{
		Flows: m.opened.Load(), Active: m.active.Load(),
		BytesIn: m.bytesIn.Load(), BytesOut: m.bytesOut.Load(),
		PacketsIn: m.packetsIn.Load(), PacketsOut: m.packetsOut.Load(),
		Retries: m.retries.Load(), Hedges: m.hedges.Load(), EarlyData: m.early.Load(),
		DatagramsIn: m.datagramsIn.Load(), DatagramsOut: m.datagramsOut.Load(),
		FallbackIn: m.fallbackIn.Load(), FallbackOut: m.fallbackOut.Load(),
	}
	for i := range m.ends {
		c.Ends[i] = m.ends[i].Load()
	}
	for i := range m.drops {
		c.Dropped[i] = m.drops[i].Load()
	}
	return c
}

// Add adds o's counts to c (totals over listeners).
func (c *Counters) Add(o Counters) {
	c.Flows += o.Flows
	c.Active += o.Active
	c.BytesIn += o.BytesIn
	c.BytesOut += o.BytesOut
	c.PacketsIn += o.PacketsIn
	c.PacketsOut += o.PacketsOut
	c.Retries += o.Retries
	c.Hedges += o.Hedges
	c.EarlyData += o.EarlyData
	c.DatagramsIn += o.DatagramsIn
	c.DatagramsOut += o.DatagramsOut
	c.FallbackIn += o.FallbackIn
	c.FallbackOut += o.FallbackOut
	for i := range c.Ends {
		c.Ends[i] += o.Ends[i]
	}
	for i := range c.Dropped {
		c.Dropped[i] += o.Dropped[i]
	}
}
