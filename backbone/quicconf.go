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

func quicConfig(keepAlive, idle time.Duration) *quic.Config {
	if keepAlive <= 0 {
		keepAlive = DefaultKeepAlivePeriod
	}
	if idle <= 0 {
		idle = DefaultIdleTimeout
	}
	return &quic.Config{
		HandshakeIdleTimeout:           handshakeTimeout,
		MaxIdleTimeout:                 idle,
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
