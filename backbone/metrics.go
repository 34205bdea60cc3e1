package backbone

import (
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anyedge/anyedge/backbone/pki"
	"github.com/anyedge/anyedge/backbone/wire"
	"github.com/anyedge/anyedge/internal/ratelog"
)

// Metrics counts what a region's backbone refuses: handshakes by reason
// (the labels of pki.RejectReason) and data streams by answer code. The
// zero value is ready to use and safe for concurrent use; the control
// plane exports the snapshots (this package registers nothing).
type Metrics struct {
	// mu guards handshakeRefused.
	mu               sync.Mutex
	handshakeRefused map[string]int64

	streamsRefused [256]atomic.Int64 // indexed by wire.Code
}

// refusalLogEvery rate-limits refusal logs: a peer retrying with a bad
// certificate must not flood the log.
const refusalLogEvery = time.Second

// CountHandshakeRefused counts one refused handshake with a reason label.
func (m *Metrics) CountHandshakeRefused(reason string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.handshakeRefused == nil {
		m.handshakeRefused = map[string]int64{}
	}
	m.handshakeRefused[reason]++
}

// HandshakeRefused returns a snapshot of the refused handshakes by reason.
func (m *Metrics) HandshakeRefused() map[string]int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.handshakeRefused)
}

// CountStreamRefused counts one data stream refused with code.
func (m *Metrics) CountStreamRefused(code wire.Code) { m.streamsRefused[code].Add(1) }

// StreamsRefused returns a snapshot of the refused streams by answer code;
// codes never used are absent.
func (m *Metrics) StreamsRefused() map[wire.Code]int64 {
	out := map[wire.Code]int64{}
	for i := range m.streamsRefused {
		if n := m.streamsRefused[i].Load(); n > 0 {
			out[wire.Code(i)] = n
		}
	}
	return out
}

// OnReject returns an onReject callback for pki.ServerConfig that counts a
// refused handshake and logs it with the peer's address and reason (at
// most one line per second and reason; the next line says how many were
// not logged).
func (m *Metrics) OnReject(log *slog.Logger) func(remote string, reason error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rl := ratelog.New(log.With("component", "backbone-server"), refusalLogEvery)
	return func(remote string, reason error) {
		label := pki.RejectReason(reason)
		m.CountHandshakeRefused(label)
		rl.Log(slog.LevelWarn, "handshake refused "+label, "backbone handshake refused", "remote", remote, "reason", label, "err", reason)
	}
}
