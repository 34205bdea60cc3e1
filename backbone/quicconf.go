package backbone

import (
	"time"

	"github.com/quic-go/quic-go"
)

// Flow-control windows sized for a long fat pipe: 150 ms × 1 Gbit/s is
// 18.75 MB in flight, so one stream and one connection can fill it.
const (
	maxStreamWindow     = 24 << 20
	maxConnectionWindow = 48 << 20
	// MaxStreamsPerConn is how many streams an edge may have open at once
	// on one connection; QUIC's MAX_STREAMS enforces it, so a peer that
	// opens streams faster waits for credit instead of exhausting the region.
	MaxStreamsPerConn = 1 << 14
)

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
	return &quic.Config{
		HandshakeIdleTimeout:           handshakeTimeout,
		MaxIdleTimeout:                 idle - keepAlive,
		KeepAlivePeriod:                keepAlive,
		InitialStreamReceiveWindow:     1 << 20,
		MaxStreamReceiveWindow:         maxStreamWindow,
		InitialConnectionReceiveWindow: 4 << 20,
		MaxConnectionReceiveWindow:     maxConnectionWindow,
		MaxIncomingStreams:             MaxStreamsPerConn,
		MaxIncomingUniStreams:          -1,
		EnableDatagrams:                true,
	}
}
