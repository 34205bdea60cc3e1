package dns

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures a Server.
type Config struct {
	// Listen are host:port addresses, each bound over UDP and TCP. Port 0
	// picks one port free for both.
	Listen []string
	// UDPSize is the largest UDP answer for an EDNS client, 512–65535
	// (default 1232); without EDNS it is 512.
	UDPSize int
	// RRL limits UDP answers per client prefix.
	RRL RRLConfig
	// MaxTCPConns bounds concurrent TCP connections (default 1024).
	MaxTCPConns int
	// Workers read each UDP socket (default GOMAXPROCS, at least 2).
	Workers int
	// Logger receives the server's events; nil discards them.
	Logger *slog.Logger
	// Registerer, if set, gets the server's Prometheus collector.
	Registerer prometheus.Registerer
	// Now is the clock of rate limiting (default time.Now).
	Now func() time.Time
}

// Server is the authoritative DNS server. Listen binds it, Run serves until
// its context ends; Close is idempotent.
type Server struct {
	cfg      Config
	log      *slog.Logger
	udpSize  int
	rrl      *rrl
	seed     maphash.Seed
	counters counters
	state    atomic.Pointer[state]

	// mu guards zone and avail, the inputs of state.
	mu    sync.Mutex
	zone  *Zone
	avail Availability

	udp       []*udpSocket
	tcp       []net.Listener
	closeOnce sync.Once
	closed    chan struct{}
	wg        sync.WaitGroup
	lastLog   atomic.Int64 // unix nanoseconds of the last rate-limited log line
	unlogged  atomic.Int64
}

// state is what a query reads: the zone and the availability compiled
// against it, swapped whole.
type state struct {
	zone  *Zone
	avail map[string][]bool
}

type udpSocket struct {
	conn *net.UDPConn
	// pktinfo is set on wildcard sockets: answers then leave from the
	// address the query was sent to.
	pktinfo bool
}

// New returns a server for zone z.
func New(cfg Config, z *Zone) (*Server, error) {
	if z == nil {
		return nil, errors.New("dns server: no zone")
	}
	if len(cfg.Listen) == 0 {
		return nil, errors.New("dns server: no listen address")
	}
	if cfg.UDPSize == 0 {
		cfg.UDPSize = 1232
	}
	if cfg.UDPSize < dns.MinMsgSize || cfg.UDPSize > dns.MaxMsgSize {
		return nil, fmt.Errorf("dns server: udp size %d outside 512–65535", cfg.UDPSize)
	}
	if cfg.MaxTCPConns <= 0 {
		cfg.MaxTCPConns = 1024
	}
	if cfg.Workers <= 0 {
		cfg.Workers = max(2, runtime.GOMAXPROCS(0))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: log.With("component", "dns"), udpSize: cfg.UDPSize,
		rrl: newRRL(cfg.RRL, cfg.Now), seed: maphash.MakeSeed(), closed: make(chan struct{})}
	s.SetZone(z)
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(collector{&s.counters}); err != nil {
			return nil, fmt.Errorf("dns server: metrics: %w", err)
		}
	}
	return s, nil
}

// SetZone swaps the zone (hot reload); queries in flight finish on the old
// one.
func (s *Server) SetZone(z *Zone) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.zone = z
	s.publish()
}

// SetAvailability swaps the view of which PoPs take clients of each
// steered accelerator.
func (s *Server) SetAvailability(a Availability) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.avail = a
	s.publish()
}

func (s *Server) publish() {
	s.state.Store(&state{zone: s.zone, avail: s.zone.steer.availability(s.avail)})
}

// Listen binds every listen address over UDP and TCP (the same port for
// both).
func (s *Server) Listen() error {
	for _, addr := range s.cfg.Listen {
		if err := s.listen(addr); err != nil {
			_ = s.Close()
			return err
		}
	}
	return nil
}

func (s *Server) listen(addr string) error {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return fmt.Errorf("dns listen %q: %w", addr, err)
	}
	for try := 0; ; try++ {
		uc, err := net.ListenUDP("udp", ua)
		if err != nil {
			return fmt.Errorf("dns listen udp %s: %w", addr, err)
		}
		bound := uc.LocalAddr().(*net.UDPAddr)
		tl, err := net.Listen("tcp", bound.String())
		if err != nil {
			_ = uc.Close()
			if ua.Port == 0 && try < 10 {
				continue // the port was free for UDP only
			}
			return fmt.Errorf("dns listen tcp %s: %w", bound, err)
		}
		sock := &udpSocket{conn: uc}
		if ip, ok := netip.AddrFromSlice(bound.IP); !ok || ip.IsUnspecified() {
			sock.pktinfo = setPktinfo(uc)
		}
		s.udp = append(s.udp, sock)
		s.tcp = append(s.tcp, newLimitListener(tl, s.cfg.MaxTCPConns))
		return nil
	}
}

// setPktinfo asks for the destination address of each datagram, so that
// a wildcard socket answers from the address it was asked on.
func setPktinfo(c *net.UDPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var err4, err6 error
	_ = rc.Control(func(fd uintptr) {
		err4 = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, syscall.IP_PKTINFO, 1)
		err6 = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IPV6, syscall.IPV6_RECVPKTINFO, 1)
	})
	return err4 == nil || err6 == nil
}

// Addrs returns the bound addresses (one per listen address; UDP and TCP
// share the port).
func (s *Server) Addrs() []netip.AddrPort {
	var out []netip.AddrPort
	for _, u := range s.udp {
		out = append(out, u.conn.LocalAddr().(*net.UDPAddr).AddrPort())
	}
	return out
}

// Run serves until ctx ends, then closes the server. Listen must have
// succeeded.
func (s *Server) Run(ctx context.Context) error {
	if len(s.udp) == 0 {
		return errors.New("dns server: not listening")
	}
	var tcpSrv []*dns.Server
	errs := make(chan error, len(s.tcp))
	for _, l := range s.tcp {
		started := make(chan struct{})
		srv := &dns.Server{Listener: l, Handler: s, NotifyStartedFunc: func() { close(started) },
			MsgAcceptFunc: s.acceptTCP, MsgInvalidFunc: s.invalidTCP,
			ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second}
		s.wg.Go(func() {
			if err := srv.ActivateAndServe(); err != nil && !errors.Is(err, net.ErrClosed) {
				errs <- fmt.Errorf("dns tcp %s: %w", l.Addr(), err)
			}
		})
		select {
		case <-started:
			tcpSrv = append(tcpSrv, srv)
		case err := <-errs:
			_ = s.Close()
			return err
		}
	}
	for _, u := range s.udp {
		for range s.cfg.Workers {
			s.wg.Go(func() { s.serveUDP(u) })
		}
	}
	s.log.Info("dns serving", "zone", s.state.Load().zone.origin, "listen", s.Addrs())
	var err error
	select {
	case <-ctx.Done():
	case err = <-errs:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, srv := range tcpSrv {
		_ = srv.ShutdownContext(sctx)
	}
	_ = s.Close()
	return err
}

// Close closes the sockets and waits for the server's goroutines.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		close(s.closed)
		for _, u := range s.udp {
			_ = u.conn.Close()
		}
		for _, l := range s.tcp {
			_ = l.Close()
		}
	})
	s.wg.Wait()
	return nil
}

// serveUDP is one reader of a UDP socket: read, answer, write, in place.
func (s *Server) serveUDP(u *udpSocket) {
	buf := make([]byte, dns.MaxMsgSize)
	out := make([]byte, dns.MaxMsgSize)
	for {
		var (
			n    int
			from netip.AddrPort
			sess *dns.SessionUDP
			err  error
		)
		if u.pktinfo {
			n, sess, err = dns.ReadFromSessionUDP(u.conn, buf)
			if err == nil {
				from = sess.RemoteAddr().(*net.UDPAddr).AddrPort()
			}
		} else {
			n, from, err = u.conn.ReadFromUDPAddrPort(buf)
		}
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.logLimited("dns udp read", "err", err)
			continue
		}
		reply := s.handlePacket(buf[:n], from.Addr().Unmap(), false, out)
		if reply == nil {
			continue
		}
		if u.pktinfo {
			_, err = dns.WriteToSessionUDP(u.conn, reply, sess)
		} else {
			_, err = u.conn.WriteToUDPAddrPort(reply, from)
		}
		if err != nil && !errors.Is(err, net.ErrClosed) {
			s.logLimited("dns udp write", "err", err, "client", from)
		}
	}
}

// handlePacket answers one raw query from src and returns the packed
// answer in out's storage, or nil when nothing is to be sent (malformed,
// a response, or dropped by rate limiting).
func (s *Server) handlePacket(raw []byte, src netip.Addr, tcp bool, out []byte) []byte {
	proto := 0
	if tcp {
		proto = 1
	}
	var req dns.Msg
	if err := req.Unpack(raw); err != nil || req.Response {
		s.counters.malformed[proto].Add(1)
		s.logLimited("dns malformed packet", "client", src, "len", len(raw), "err", err)
		return nil
	}
	a := s.respond(&req, src, tcp)
	s.counters.queries[proto][a.qtype].Add(1)
	reply, err := a.msg.PackBuffer(out)
	if err != nil {
		s.logLimited("dns pack", "err", err)
		return nil
	}
	if !tcp {
		switch s.rrl.check(src, a.kind) {
		case drop:
			s.counters.rrlDropped.Add(1)
			return nil
		case slip:
			s.counters.rrlSlipped.Add(1)
			a.msg.Answer, a.msg.Ns = nil, nil
			a.msg.Extra = onlyOPT(a.msg.Extra)
			a.msg.Truncated = true
			if reply, err = a.msg.PackBuffer(out); err != nil {
				return nil
			}
		}
	}
	if len(reply) > a.maxSize {
		s.counters.truncated.Add(1)
		a.msg.Answer, a.msg.Ns = nil, nil
		a.msg.Extra = onlyOPT(a.msg.Extra)
		a.msg.Truncated = true
		if reply, err = a.msg.PackBuffer(out); err != nil {
			return nil
		}
	}
	s.counters.responses[proto][a.qtype][rcodeIndex(a.msg.Rcode)].Add(1)
	return reply
}

// onlyOPT keeps the OPT record of an additional section.
func onlyOPT(extra []dns.RR) []dns.RR {
	for _, rr := range extra {
		if rr.Header().Rrtype == dns.TypeOPT {
			return []dns.RR{rr}
		}
	}
	return nil
}

// ServeDNS implements dns.Handler for the TCP side, which miekg/dns serves.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	var buf [dns.MaxMsgSize]byte
	raw, err := req.PackBuffer(buf[:])
	if err != nil {
		s.counters.malformed[1].Add(1)
		return
	}
	if reply := s.handlePacket(raw, remoteAddr(w.RemoteAddr()), true, buf[:]); reply != nil {
		_, _ = w.Write(reply)
	}
}

// acceptTCP lets every query through to the handler, which answers
// FORMERR or NOTIMP itself; responses are ignored and counted as
// malformed, as over UDP.
func (s *Server) acceptTCP(dh dns.Header) dns.MsgAcceptAction {
	if dh.Bits&(1<<15) != 0 {
		s.counters.malformed[1].Add(1)
		return dns.MsgIgnore
	}
	return dns.MsgAccept
}

func (s *Server) invalidTCP(m []byte, err error) {
	s.counters.malformed[1].Add(1)
	s.logLimited("dns malformed tcp message", "len", len(m), "err", err)
}

// logLimited logs at most one line per second, counting the others.
func (s *Server) logLimited(msg string, args ...any) {
	now := time.Now().UnixNano()
	last := s.lastLog.Load()
	if now-last < int64(time.Second) || !s.lastLog.CompareAndSwap(last, now) {
		s.unlogged.Add(1)
		return
	}
	if n := s.unlogged.Swap(0); n > 0 {
		args = append(args, "not_logged", n)
	}
	s.log.Warn(msg, args...)
}

// limitListener accepts at most cap(sem) connections at a time.
type limitListener struct {
	net.Listener
	sem       chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func newLimitListener(l net.Listener, n int) *limitListener {
	return &limitListener{Listener: l, sem: make(chan struct{}, n), done: make(chan struct{})}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
}

func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}
