package backbone

import (
	"os"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/qlog"
)

// Flow-control windows sized for a long fat pipe from the first byte: 1
// Gbit/s × 200 ms is 25 MB in flight, so one stream's window (32 MiB) lets
// one flow fill it without waiting for quic-go's auto-tuning (which starts
// from the initial window and doubles it at most once per round trip),
// and a connection's (64 MiB) lets two such flows share a connection. A
// window is credit, not memory: a receiver holds only bytes that arrived
// and were not read yet, so an idle flow costs nothing more, and the most
// one connection can make its peer hold is the connection window.
const (
	StreamWindow     = 32 << 20
	ConnectionWindow = 64 << 20
	// MaxStreamsPerConn is how many streams an edge may have open at once
	// on one connection; QUIC's MAX_STREAMS enforces it, so a peer that
	// opens streams faster waits for credit instead of exhausting the region.
	MaxStreamsPerConn = 1 << 14
)

// DefaultConnections is the pool size per region: room for a striped
// flow's lanes (DefaultStripeLanes), each on its own connection.
const DefaultConnections = 4

// Default keep-alive and idle timeout: a dead peer is noticed within
// IdleTimeout (3 s), with keep-alives every second so that an idle but
// healthy connection never reaches it.
const (
	DefaultKeepAlivePeriod = time.Second
	DefaultIdleTimeout     = 3 * time.Second
	handshakeTimeout       = 2 * time.Second
)

// quicConfig builds the QUIC configuration of both ends. idle is the
// dead-peer bound: a peer silent for idle is declared dead. QUIC's idle
// timer (RFC 9000 §10.1) restarts at the first ack-eliciting packet sent
// after the last packet received, and on an idle connection that packet is
// the next keep-alive PING, up to one keep-alive period after the peer fell
// silent. So the QUIC max_idle_timeout advertised is idle − keepAlive (2 s
// by default), and silence is noticed within keepAlive + (idle − keepAlive)
// = idle. The peers use the smaller of their two advertised timeouts, and
// quic-go never lets the timeout drop below 3 PTO on slow paths.
func quicConfig(keepAlive, idle time.Duration) *quic.Config {
	if keepAlive <= 0 {
		keepAlive = DefaultKeepAlivePeriod
	}
	if idle <= 0 {
		idle = DefaultIdleTimeout
	}
	if keepAlive >= idle {
		keepAlive = idle / 3
	}
	conf := &quic.Config{
		HandshakeIdleTimeout:           handshakeTimeout,
		MaxIdleTimeout:                 idle - keepAlive,
		KeepAlivePeriod:                keepAlive,
		InitialStreamReceiveWindow:     StreamWindow,
		MaxStreamReceiveWindow:         StreamWindow,
		InitialConnectionReceiveWindow: ConnectionWindow,
		MaxConnectionReceiveWindow:     ConnectionWindow,
		MaxIncomingStreams:             MaxStreamsPerConn,
		MaxIncomingUniStreams:          -1,
		EnableDatagrams:                true,
	}
	if os.Getenv(QlogDirEnv) != "" {
		// For profiling a slow flow: quic-go writes one qlog per
		// connection end into the directory (congestion window, losses).
		conf.Tracer = qlog.DefaultConnectionTracer
	}
	return conf
}

// QlogDirEnv names the environment variable that, when set to a directory,
// makes every backbone connection end write a qlog there (quic-go's
// qlog.DefaultConnectionTracer, one file per connection end) — the same
// switch as bench/cmd/quictrace's, for the edge and the region.
const QlogDirEnv = "QLOGDIR"
