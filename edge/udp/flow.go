package udp

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/anyedge/anyedge/backbone"
	"github.com/anyedge/anyedge/backbone/wire"
	"github.com/anyedge/anyedge/edge/admit"
	"github.com/anyedge/anyedge/edge/flow"
	"github.com/anyedge/anyedge/edge/router"
)

// packetBufs holds buffers of one packet with room for a datagram's flow
// ID in front, shared by the flows: for the flush of a new flow's queue
// and for each packet that comes back on a flow's stream.
var packetBufs = sync.Pool{New: func() any { b := make([]byte, 8+wire.MaxPacketLen); return &b }}

// udpFlow is one UDP flow: (listener socket, client address, client port).
type udpFlow struct {
	id   uint64
	sock *socket
	// bl is the listener configuration the flow started with, and meter
	// its meter, which counts the flow to its end.
	bl     *boundListener
	meter  *flow.Meter
	client netip.AddrPort
	start  time.Time
	pass   admit.Pass   // the flow's share of its listener's caps
	last   atomic.Int64 // unix nanoseconds of the last packet either way
	// What the flow carried, for its record.
	bytesIn, bytesOut, packetsIn, packetsOut atomic.Uint64
	// link is the open stream and its connection; nil while the flow is
	// opening or after its stream died.
	link atomic.Pointer[link]

	// mu guards choice, opening, pending, flushing, closed and served.
	mu      sync.Mutex
	choice  router.Choice // the endpoint, picked once per flow
	opening bool
	pending [][]byte
	// flushing is the new stream while open sends the queue on it, before
	// link is set: remove cancels it, which ends a blocked write.
	flushing *link
	closed   bool
	served   bool // a stream was open once
}

func (fl *udpFlow) touch() { fl.last.Store(time.Now().UnixNano()) }

// in counts a packet of n bytes from the client, out one to it.
func (fl *udpFlow) in(n int) {
	fl.packetsIn.Add(1)
	fl.bytesIn.Add(uint64(n))
	fl.meter.In(n)
}

func (fl *udpFlow) out(n int) {
	fl.packetsOut.Add(1)
	fl.bytesOut.Add(uint64(n))
	fl.meter.Out(n)
}

// link is a flow's open stream; the flow's datagrams ride its connection.
type link struct {
	str  backbone.Stream
	conn *quic.Conn
	// wmu serialises writes on str.
	wmu   sync.Mutex
	frame []byte
}

// writePacket sends p on the stream in the length-prefixed framing.
func (l *link) writePacket(p []byte) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	var err error
	if l.frame, err = wire.AppendPacket(l.frame[:0], p); err != nil {
		return err
	}
	_, err = l.str.Write(l.frame)
	return err
}

// open opens fl's stream (retrying other endpoints or regions as the TCP
// path does), flushes the queued packets, and then serves the stream's
// packets from the region until the stream ends.
func (f *Forwarder) open(ctx context.Context, fl *udpFlow) {
	l, err := f.connect(ctx, fl)
	var cut flow.Reason
	if err == nil && (fl.bl != fl.sock.cur.Load() || fl.sock.removed.Load()) {
		// A reload since the flow started may have removed its
		// endpoint or its listener.
		cut = fl.cutReason()
	}
	fl.mu.Lock()
	if err != nil || fl.closed || cut != 0 {
		if err == nil {
			l.str.CancelRead(wire.StreamShutdown)
			l.str.CancelWrite(wire.StreamShutdown)
			l.str.Release()
		}
		// A failed flow leaves the table: its next packet makes a new
		// flow with a new attempt. Until then packets are dropped.
		wasClosed, served := fl.closed, fl.served
		fl.closed = true
		fl.meter.Drop(flow.EdgeQueue, len(fl.pending))
		fl.pending = nil
		fl.opening = false
		fl.mu.Unlock()
		if !wasClosed {
			reason := flow.SetupFailure(err)
			switch {
			case cut != 0:
				reason = cut
			case ctx.Err() != nil:
				reason = flow.Shutdown
			case served:
				reason = flow.BackboneLost
			}
			f.rl.Info("udp flow open failed", "listener", fl.meter.Listener().Key, "client", fl.client.String(), "reason", reason, "err", err)
			f.remove(fl, wire.StreamReset, reason)
		}
		return
	}
	// Flush the queue without holding mu across a send (a packet too
	// large for a datagram writes on the stream, which can block): packets
	// that arrive meanwhile still queue, since link is not stored yet, and
	// the next round sends them, so that none overtakes the queued ones.
	bp := packetBufs.Get().(*[]byte)
	buf := *bp
	fl.flushing = l
	for len(fl.pending) > 0 && !fl.closed {
		batch := fl.pending
		fl.pending = nil
		fl.mu.Unlock()
		for _, p := range batch {
			n := copy(buf[8:], p)
			if !f.send(fl, l, buf, 8, n) {
				fl.meter.Drop(flow.Backbone, 1)
			}
		}
		fl.mu.Lock()
	}
	fl.flushing = nil
	packetBufs.Put(bp)
	fl.opening = false
	if fl.closed {
		// Removed while flushing: remove found no link to end.
		fl.mu.Unlock()
		l.str.CancelRead(wire.StreamShutdown)
		l.wmu.Lock()
		l.str.CancelWrite(wire.StreamShutdown)
		l.wmu.Unlock()
		l.str.Release()
		return
	}
	fl.served = true
	fl.link.Store(l)
	fl.mu.Unlock()

	// Packets from the region that did not fit a datagram. An idle flow
	// waits for the next one's length holding no buffer: a packet buffer
	// is 64 KiB, and there may be a hundred thousand flows.
	for {
		n, err := wire.ReadPacketLen(l.str)
		var bp *[]byte
		if err == nil {
			bp = packetBufs.Get().(*[]byte)
			err = wire.ReadPacketBody(l.str, (*bp)[:n])
		}
		if err != nil {
			if bp != nil {
				packetBufs.Put(bp)
			}
			var se *quic.StreamError
			if errors.As(err, &se) && se.ErrorCode == wire.StreamEndpointRemoved {
				// The region's reload removed the endpoint: the flow
				// ends rather than reopen towards it.
				f.remove(fl, wire.StreamReset, flow.EndpointRemoved)
			}
			break
		}
		fl.touch()
		if _, err := fl.sock.conn.WriteToUDPAddrPort((*bp)[:n], fl.client); err == nil {
			fl.out(n)
			fl.meter.FallbackOut()
		}
		packetBufs.Put(bp)
	}
	// The stream ended: the flow reopens on its next packet.
	fl.link.CompareAndSwap(l, nil)
	l.str.CancelRead(wire.StreamReset)
	l.wmu.Lock()
	l.str.CancelWrite(wire.StreamReset)
	l.wmu.Unlock()
	l.str.Release()
}

// connect picks (once) the flow's endpoint and opens its stream, retrying
// elsewhere on a refusal or an unreachable region.
func (f *Forwarder) connect(ctx context.Context, fl *udpFlow) (*link, error) {
	rf := router.Flow{Proto: 17, Src: fl.client, Dst: fl.sock.local}
	hdr := wire.Header{Kind: wire.KindUDP, ListenerPort: fl.sock.local.Port(), FlowID: fl.id,
		Client: fl.client, Accelerator: fl.sock.local}
	fl.mu.Lock()
	choice := fl.choice
	fl.mu.Unlock()
	var tried []router.Choice
	var unreachable []string
	exclude := func(region, id string) bool {
		for _, r := range unreachable {
			if r == region {
				return true
			}
		}
		for _, t := range tried {
			if id != "" && t.EndpointID == id && t.Region == region {
				return true
			}
		}
		return false
	}
	var lastErr error
	for attempt := 0; attempt <= MaxRetries; attempt++ {
		if choice.EndpointID == "" {
			var ex router.Exclude
			if attempt > 0 {
				ex = exclude
			}
			regions := *f.regions.Load()
			c, err := fl.sock.cur.Load().table.Pick(rf, regions, ex)
			if err != nil {
				if lastErr == nil {
					lastErr = err
				}
				break
			}
			choice = c
		}
		hdr.EndpointID = choice.EndpointID
		if attempt > 0 {
			fl.meter.Retry()
		}
		str, err := (*f.regions.Load()).OpenFlow(ctx, choice.Region, &hdr, nil, f.cfg.OpenTimeout)
		if err == nil {
			fl.mu.Lock()
			fl.choice = choice
			fl.mu.Unlock()
			return &link{str: str, conn: str.Conn()}, nil
		}
		lastErr = err
		// A refusal for the endpoint leaves the region's other endpoints;
		// an unreachable or overloaded region is left whole.
		var refused *wire.RefusedError
		if errors.As(err, &refused) && refused.Code != wire.CodeOverloaded {
			tried = append(tried, choice)
		} else {
			unreachable = append(unreachable, choice.Region)
		}
		choice = router.Choice{}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}
