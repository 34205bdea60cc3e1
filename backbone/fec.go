package backbone

import (
	"net"
	"sync"
	"time"

	"github.com/anyedge/anyedge/backbone/fec"
)

// FECConfig says when an edge's backbone connections protect their packets
// with forward error correction (backbone/fec; docs/backbone-protocol.md,
// "Forward error correction"): on a connection to a region whose hello
// lists wire.CapFEC, once its minimum RTT is at least MinRTT.
type FECConfig struct {
	// Off keeps every socket of the pool unwrapped.
	Off bool
	// MinRTT: connections whose minimum RTT (the path, without queues)
	// stays below this do not use FEC (default 20 ms). A near path regrows its window within
	// milliseconds after a loss; FEC pays where that takes seconds.
	MinRTT time.Duration
}

// DefaultFECMinRTT is FECConfig.MinRTT's default.
const DefaultFECMinRTT = 20 * time.Millisecond

func (fc *FECConfig) setDefaults() {
	if fc.MinRTT <= 0 {
		fc.MinRTT = DefaultFECMinRTT
	}
}

// wrapFEC wraps a backbone socket for FEC (nil: off).
func wrapFEC(pc fec.PacketConn, off bool) *fec.Conn {
	if off {
		return nil
	}
	return fec.NewConn(pc, fec.Config{})
}

// fecPath is FEC on one connection: enabled (edge) or allowed (region) at
// most once, towards the connection's remote address, and undone when the
// connection ends. The zero value (or a nil Conn) does nothing.
type fecPath struct {
	conn *fec.Conn
	addr net.Addr

	once sync.Once
	on   bool
}

// enable turns FEC on for the path and reports whether it is on.
func (f *fecPath) enable() bool { return f.register(true) }

// allow lets the peer turn FEC on for the path (fec.Conn.Allow) and
// reports whether it may.
func (f *fecPath) allow() bool { return f.register(false) }

func (f *fecPath) register(enable bool) bool {
	if f == nil || f.conn == nil {
		return false
	}
	f.once.Do(func() {
		if enable {
			f.on = f.conn.Enable(f.addr)
		} else {
			f.on = f.conn.Allow(f.addr)
		}
	})
	return f.on
}

// end turns FEC off again if enable turned it on.
func (f *fecPath) end() {
	if f == nil || f.conn == nil {
		return
	}
	f.once.Do(func() {})
	if f.on {
		f.conn.Disable(f.addr)
	}
}

// FECStats are the counters of FEC over a client's or server's sockets.
type FECStats = fec.Stats

func addFECStats(a *FECStats, b fec.Stats) {
	a.Protected += b.Protected
	a.ParitySent += b.ParitySent
	a.Groups += b.Groups
	a.Lost += b.Lost
	a.Recovered += b.Recovered
	a.Unrecovered += b.Unrecovered
	a.Mismatched += b.Mismatched
	a.Dropped += b.Dropped
	a.ReportsSent += b.ReportsSent
	a.ReportsReceived += b.ReportsReceived
}
