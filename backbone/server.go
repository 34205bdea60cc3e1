package backbone

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/anyedge/anyedge/backbone/fec"
	"github.com/anyedge/anyedge/backbone/pki"
	"github.com/anyedge/anyedge/backbone/wire"
)

// ServerConfig configures a region's backbone listener.
type ServerConfig struct {
	// Listen is the UDP address to bind (host:port; port 0 picks one).
	Listen string
	// TLS is the server's mutual-TLS configuration.
	TLS *tls.Config
	// KeepAlivePeriod and IdleTimeout bound dead-peer detection
	// (defaults 1 s and 3 s).
	KeepAlivePeriod, IdleTimeout time.Duration
	// MaxStreams is how many streams one edge connection may have open at
	// once (QUIC MAX_STREAMS); an edge that wants more waits for credit.
	// Default MaxStreamsPerConn.
	MaxStreams int64
	// NoFEC keeps the socket unwrapped: edges that ask for forward error
	// correction (wire.CapFEC) are not offered it.
	NoFEC bool
	// Logger receives connection events.
	Logger *slog.Logger
}

// Peer is an authenticated edge connection.
type Peer struct {
	// Name is the edge's node name from its verified certificate.
	Name string
	// Conn is the QUIC connection the stream arrived on.
	Conn *quic.Conn

	fec *fecPath
}

// AllowFEC lets the edge turn forward error correction on for the peer's
// connection, both ways (its first parity frame does), and reports whether
// it may: the edge said it speaks FEC in its hello (wire.CapFEC), and the
// region says so in its own when this reports true. It ends with the
// connection.
func (p Peer) AllowFEC() bool { return p.fec.allow() }

// Handler serves the streams edges open. ServeStream owns the stream: it
// must finish or cancel it before returning, and return when ctx ends.
type Handler interface {
	ServeStream(ctx context.Context, peer Peer, s *quic.Stream)
}

// Server accepts edge connections on a region and hands their streams to
// a Handler.
type Server struct {
	udp  *net.UDPConn
	fec  *fec.Conn // nil: NoFEC
	tr   *quic.Transport
	ln   *quic.Listener
	h    Handler
	log  *slog.Logger
	wg   sync.WaitGroup
	stop context.CancelFunc
	ctx  context.Context

	closeOnce sync.Once
	// mu orders handlers' start against Close: once closing is set, no
	// handler joins wg, so Close's Wait does not race an Add.
	mu      sync.Mutex
	closing bool
}

// Listen binds the backbone port; Serve accepts on it.
func Listen(cfg ServerConfig, h Handler) (*Server, error) {
	if cfg.TLS == nil {
		return nil, errors.New("backbone server: no TLS configuration")
	}
	laddr, err := net.ResolveUDPAddr("udp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("backbone server: listen address %q: %w", cfg.Listen, err)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "backbone-server")
	udp, err := net.ListenUDP("udp", laddr)
	if err != nil {
		return nil, fmt.Errorf("backbone server: %w", err)
	}
	SetSocketBuffers(udp, logger)
	var pc net.PacketConn = udp
	fc := wrapFEC(udp, cfg.NoFEC)
	if fc != nil {
		pc = fc
	}
	tr := &quic.Transport{Conn: pc}
	qconf := quicConfig(cfg.KeepAlivePeriod, cfg.IdleTimeout)
	if cfg.MaxStreams > 0 {
		qconf.MaxIncomingStreams = cfg.MaxStreams
	}
	ln, err := tr.Listen(cfg.TLS, qconf)
	if err != nil {
		_ = udp.Close()
		return nil, fmt.Errorf("backbone server: %w", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	return &Server{udp: udp, fec: fc, tr: tr, ln: ln, h: h, log: logger, ctx: ctx, stop: stop}, nil
}

// FECStats returns the counters of forward error correction on the
// region's socket (zero with NoFEC).
func (s *Server) FECStats() FECStats {
	if s.fec == nil {
		return FECStats{}
	}
	return s.fec.Stats()
}

// Addr is the bound UDP address.
func (s *Server) Addr() net.Addr { return s.udp.LocalAddr() }

// Serve accepts connections until ctx ends or Close is called, then closes
// every connection with a shutdown code and waits for all handlers.
func (s *Server) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { _ = s.Close() })
	defer stop()
	for {
		conn, err := s.ln.Accept(s.ctx)
		if err != nil {
			_ = s.Close()
			if s.ctx.Err() != nil || errors.Is(err, quic.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("backbone server: accept: %w", err)
		}
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			_ = conn.CloseWithError(wire.ConnShutdown, "region shutting down")
			return nil
		}
		s.wg.Go(func() { s.serveConn(conn) })
		s.mu.Unlock()
	}
}

// Close stops accepting, closes all connections and waits for handlers.
// It is idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closing = true
		s.mu.Unlock()
		// Stop taking handshakes before closing the connections: an edge
		// redials the moment its connection closes, and a handshake that
		// completed in between would sit unaccepted in the queue until the
		// transport destroyed it without a close frame — a connection the
		// edge would then wait out its idle timeout on and report lost.
		// Handshakes in flight are refused; the queue is drained and each
		// connection in it closed with the shutdown code.
		_ = s.ln.Close()
		for {
			conn, err := s.ln.Accept(context.Background())
			if err != nil {
				break
			}
			_ = conn.CloseWithError(wire.ConnShutdown, "region shutting down")
		}
		s.stop()
		s.wg.Wait()
		_ = s.tr.Close()
		if s.fec != nil {
			_ = s.fec.Close()
		}
		_ = s.udp.Close()
	})
	return nil
}

func (s *Server) serveConn(conn *quic.Conn) {
	name, _ := pki.PeerName(conn.ConnectionState().TLS)
	log := s.log.With("peer", name, "remote", conn.RemoteAddr().String())
	log.Info("edge connected", "resumed", conn.ConnectionState().TLS.DidResume)
	peer := Peer{Name: name, Conn: conn, fec: &fecPath{conn: s.fec, addr: conn.RemoteAddr()}}
	defer peer.fec.end()
	stop := context.AfterFunc(s.ctx, func() {
		_ = conn.CloseWithError(wire.ConnShutdown, "region shutting down")
	})
	defer stop()
	var wg sync.WaitGroup
	if dh, ok := s.h.(DatagramHandler); ok {
		wg.Go(func() { dh.ServeDatagrams(conn.Context(), peer) })
	}
	for {
		str, err := conn.AcceptStream(s.ctx)
		if err != nil {
			log.Info("edge disconnected", "reason", context.Cause(conn.Context()))
			// Either the region is stopping (the reason the edge sees) or
			// the connection is already gone and this does nothing.
			_ = conn.CloseWithError(wire.ConnShutdown, "region shutting down")
			break
		}
		wg.Go(func() { s.h.ServeStream(conn.Context(), peer, str) })
	}
	wg.Wait()
}
