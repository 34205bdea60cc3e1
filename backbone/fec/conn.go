package fec

import (
	"crypto/subtle"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
)

// PacketConn is the socket Conn wraps: a UDP socket as quic-go uses it on
// Linux (a *net.UDPConn, or a wrapper of one that keeps these methods).
// Because Conn keeps them too, quic-go still reads in batches and writes
// with GSO and ECN through it.
type PacketConn interface {
	net.PacketConn
	SyscallConn() (syscall.RawConn, error)
	SetReadBuffer(int) error
	SetWriteBuffer(int) error
	ReadMsgUDP(b, oob []byte) (n, oobn, flags int, addr *net.UDPAddr, err error)
	WriteMsgUDP(b, oob []byte, addr *net.UDPAddr) (n, oobn int, err error)
}

// batchConn reads several datagrams at once (recvmmsg): what quic-go
// reads with when the socket offers it.
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
}

// Config tunes a Conn; the zero value is the default.
type Config struct {
	// FlushDelay is the longest a group that has not filled waits for its
	// parity (default 1 ms): the tail of a burst is protected too, and a
	// loss is rebuilt well within quic-go's time threshold (9/8 of an RTT)
	// on the paths FEC is used on.
	FlushDelay time.Duration
	// MaxPeers bounds the peers protected at once (default 256); each
	// holds about 5 KiB.
	MaxPeers int
	// Logger receives peer events.
	Logger *slog.Logger
}

// Defaults.
const (
	DefaultFlushDelay = time.Millisecond
	DefaultMaxPeers   = 256
	// initialLoss is the loss rate assumed before the first report: 0.1 %,
	// which gives groups of 8.
	initialLoss = 0.001
	// reportEvery is how many parity frames a receiver takes between two
	// reports to the sender.
	reportEvery = 32
	// minReportCovered is how many data datagrams a report must add before
	// the sender updates its loss estimate from it.
	minReportCovered = 64
	// overflowLen is the extra room for each datagram read: a parity frame
	// is up to parityHeaderLen bytes longer than quic-go's read buffers.
	overflowLen = 64
)

// Conn wraps a backbone UDP socket. Datagrams to and from peers that were
// not enabled pass through untouched (FEC frames from them are dropped);
// towards an enabled peer, every group of datagrams is followed by a
// parity frame, and from it, a datagram lost from a group is rebuilt from
// the others and the parity. Its methods are safe for concurrent use,
// except that quic-go's single reader is expected to be the only caller of
// ReadBatch at a time (a second one waits).
type Conn struct {
	PacketConn
	batch batchConn
	cfg   Config
	log   *slog.Logger

	mu     sync.RWMutex
	peers  map[netip.AddrPort]*peer
	closed bool
	// registered is len(peers), activeN the peers whose path is protected:
	// while it is zero, every datagram is a pass-through.
	registered, activeN atomic.Int32

	batchR, singleR reader
	stats           counters

	closeOnce sync.Once
	closeErr  error
}

// Stats are a Conn's cumulative counters.
type Stats struct {
	// Protected is the data datagrams covered by the parity frames sent,
	// ParitySent those frames.
	Protected, ParitySent uint64
	// Groups is the parity frames received that followed the previous one
	// in sequence; Lost the data datagrams of those groups that did not
	// arrive, Recovered those rebuilt, Unrecovered those not (their group
	// lost two or more).
	Groups, Lost, Recovered, Unrecovered uint64
	// Mismatched counts rebuilds refused because the group did not add up
	// (a datagram reordered across a parity, a duplicate, a forged frame).
	Mismatched uint64
	// Dropped counts FEC frames dropped unread: from a peer that was not
	// enabled, malformed, or truncated.
	Dropped uint64
	// ReportsSent and ReportsReceived count loss reports.
	ReportsSent, ReportsReceived uint64
}

type counters struct {
	protected, paritySent                        atomic.Uint64
	groups, lost, recovered, unrecovered         atomic.Uint64
	mismatched, dropped, reportsSent, reportsRcv atomic.Uint64
}

// NewConn wraps pc. It reads with pc's ReadBatch when it has one, and
// otherwise through ipv4.NewPacketConn (pc must then be a net.Conn, as a
// *net.UDPConn is).
func NewConn(pc PacketConn, cfg Config) *Conn {
	if cfg.FlushDelay <= 0 {
		cfg.FlushDelay = DefaultFlushDelay
	}
	if cfg.MaxPeers <= 0 {
		cfg.MaxPeers = DefaultMaxPeers
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Conn{PacketConn: pc, cfg: cfg, log: log.With("component", "fec"), peers: map[netip.AddrPort]*peer{}}
	if b, ok := pc.(batchConn); ok {
		c.batch = b
	} else if _, ok := pc.(net.Conn); ok {
		c.batch = ipv4.NewPacketConn(pc)
	}
	return c
}

func key(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// Enable starts protecting the path to and from addr (a *net.UDPAddr):
// parity frames follow what is sent there, and losses of what comes from
// there are rebuilt. It reports false when addr is not a UDP address, the
// Conn is closed, or MaxPeers peers are registered already. Enables and
// Allows are counted: each that reported true is undone by one Disable (a
// new connection from the same address may be registered before the old
// one ends).
func (c *Conn) Enable(addr net.Addr) bool { return c.register(addr, true) }

// Allow registers addr as a peer that may turn FEC on: the path stays
// plain until the first parity frame from addr arrives, and is protected
// both ways from then on. A region allows the edges that asked for FEC in
// their hello; each edge decides when its path is long enough.
func (c *Conn) Allow(addr net.Addr) bool { return c.register(addr, false) }

func (c *Conn) register(addr net.Addr, active bool) bool {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return false
	}
	k := key(ua.AddrPort())
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	p, ok := c.peers[k]
	if !ok {
		if len(c.peers) >= c.cfg.MaxPeers {
			return false
		}
		p = &peer{addr: net.UDPAddrFromAddrPort(k), k: groupFor(initialLoss), lossEst: initialLoss}
		p.timer = time.AfterFunc(time.Hour, func() { p.onTimer(c) })
		p.timer.Stop()
		c.peers[k] = p
		c.registered.Store(int32(len(c.peers)))
	}
	p.refs++
	if active && !p.active.Load() {
		p.active.Store(true)
		c.activeN.Add(1)
	}
	c.log.Debug("fec peer registered", "peer", k.String(), "active", p.active.Load())
	return true
}

// activate turns FEC on for an allowed peer whose first parity frame
// arrived.
func (c *Conn) activate(p *peer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.peers[key(p.addr.AddrPort())] == p && !p.active.Load() {
		p.active.Store(true)
		c.activeN.Add(1)
		c.log.Debug("fec turned on by the peer", "peer", p.addr.String())
	}
}

// Disable undoes one Enable or Allow; the last stops protecting the path
// to and from addr (a partial group is dropped without its parity).
func (c *Conn) Disable(addr net.Addr) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return
	}
	k := key(ua.AddrPort())
	c.mu.Lock()
	p := c.peers[k]
	if p != nil {
		if p.refs--; p.refs > 0 {
			p = nil
		} else {
			delete(c.peers, k)
			c.registered.Store(int32(len(c.peers)))
			if p.active.Load() {
				c.activeN.Add(-1)
			}
		}
	}
	c.mu.Unlock()
	if p != nil {
		p.stop()
		c.log.Debug("fec peer removed", "peer", k.String())
	}
}

// Enabled reports whether the path to addr is protected.
func (c *Conn) Enabled(addr net.Addr) bool {
	ua, ok := addr.(*net.UDPAddr)
	return ok && c.lookup(ua.AddrPort()) != nil
}

// Group is the group size in use towards addr (0: not protected): it
// follows the loss the peer reports.
func (c *Conn) Group(addr net.Addr) int {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0
	}
	p := c.lookup(ua.AddrPort())
	if p == nil {
		return 0
	}
	p.smu.Lock()
	defer p.smu.Unlock()
	return p.k
}

// lookup returns the protected peer at ap, or nil: the data path's
// lookup, a single atomic load while no path is protected.
func (c *Conn) lookup(ap netip.AddrPort) *peer {
	if c.activeN.Load() == 0 {
		return nil
	}
	c.mu.RLock()
	p := c.peers[key(ap)]
	c.mu.RUnlock()
	if p == nil || !p.active.Load() {
		return nil
	}
	return p
}

func (c *Conn) lookupAddr(a net.Addr) *peer {
	ua, ok := a.(*net.UDPAddr)
	if !ok || c.activeN.Load() == 0 {
		return nil
	}
	return c.lookup(ua.AddrPort())
}

// lookupRegistered returns the peer at a, protected or only allowed.
func (c *Conn) lookupRegistered(a net.Addr) *peer {
	ua, ok := a.(*net.UDPAddr)
	if !ok || c.registered.Load() == 0 {
		return nil
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.peers[key(ua.AddrPort())]
}

// Stats returns the cumulative counters.
func (c *Conn) Stats() Stats {
	s := &c.stats
	return Stats{
		Protected: s.protected.Load(), ParitySent: s.paritySent.Load(),
		Groups: s.groups.Load(), Lost: s.lost.Load(), Recovered: s.recovered.Load(), Unrecovered: s.unrecovered.Load(),
		Mismatched: s.mismatched.Load(), Dropped: s.dropped.Load(),
		ReportsSent: s.reportsSent.Load(), ReportsReceived: s.reportsRcv.Load(),
	}
}

// Close stops every peer's timer and closes the socket. It is idempotent.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		peers := c.peers
		c.peers = map[netip.AddrPort]*peer{}
		c.registered.Store(0)
		c.activeN.Store(0)
		c.mu.Unlock()
		for _, p := range peers {
			p.stop()
		}
		c.closeErr = c.PacketConn.Close()
	})
	return c.closeErr
}

// WriteMsgUDP sends b (one datagram, or several of oob's UDP_SEGMENT size
// at once: GSO) and, towards an enabled peer, adds them to its group.
func (c *Conn) WriteMsgUDP(b, oob []byte, addr *net.UDPAddr) (n, oobn int, err error) {
	if addr == nil || c.activeN.Load() == 0 {
		return c.PacketConn.WriteMsgUDP(b, oob, addr)
	}
	p := c.lookup(addr.AddrPort())
	if p == nil {
		return c.PacketConn.WriteMsgUDP(b, oob, addr)
	}
	p.smu.Lock()
	defer p.smu.Unlock()
	p.oob = appendWithoutGSO(p.oob[:0], oob)
	seg := segmentSize(oob)
	if seg <= 0 || len(b) <= seg {
		n, oobn, err = c.PacketConn.WriteMsgUDP(b, oob, addr)
		if err == nil {
			p.add(c, b)
		}
		return n, oobn, err
	}
	// Sent and counted under one lock, a GSO write cut where a group
	// ends: the receiver tells the groups apart by order of arrival, so
	// each parity must follow its group's last datagram on the wire and
	// precede the next group's first.
	for off := 0; off < len(b); {
		end := min(off+max(p.k-p.n, 1)*seg, len(b))
		w, wo, err := c.PacketConn.WriteMsgUDP(b[off:end], oob, addr)
		n, oobn = n+w, wo
		if err != nil {
			return n, oobn, err
		}
		for ; off < end; off += seg {
			p.add(c, b[off:min(off+seg, end)])
		}
	}
	return n, oobn, nil
}

// WriteTo sends one datagram (what quic-go uses on a socket without
// WriteMsgUDP; here for completeness).
func (c *Conn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return c.PacketConn.WriteTo(b, addr)
	}
	n, _, err := c.WriteMsgUDP(b, nil, ua)
	return n, err
}

// ReadBatch reads datagrams as quic-go does: FEC frames are taken out,
// and a datagram rebuilt from a parity takes the parity's place.
func (c *Conn) ReadBatch(ms []ipv4.Message, flags int) (int, error) {
	if c.batch == nil {
		return 0, errors.New("fec: the socket cannot read in batches")
	}
	r := &c.batchR
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		if err := r.prepare(ms); err != nil {
			return 0, err
		}
		n, err := c.batch.ReadBatch(ms, flags)
		if n > 0 {
			n = c.filter(ms[:n], r)
		}
		if n > 0 || err != nil {
			return n, err
		}
	}
}

// ReadMsgUDP reads one datagram (what quic-go uses on a socket without
// batches; here for completeness), as ReadBatch does.
func (c *Conn) ReadMsgUDP(b, oob []byte) (n, oobn, flags int, addr *net.UDPAddr, err error) {
	if c.batch == nil {
		return 0, 0, 0, nil, errors.New("fec: the socket cannot read in batches")
	}
	r := &c.singleR
	r.mu.Lock()
	defer r.mu.Unlock()
	ms := []ipv4.Message{{Buffers: [][]byte{b}, OOB: oob}}
	for {
		if err := r.prepare(ms); err != nil {
			return 0, 0, 0, nil, err
		}
		k, err := c.batch.ReadBatch(ms, 0)
		if k > 0 && c.filter(ms[:1], r) == 1 {
			ua, _ := ms[0].Addr.(*net.UDPAddr)
			return ms[0].N, ms[0].NN, ms[0].Flags, ua, nil
		}
		if err != nil {
			return 0, 0, 0, nil, err
		}
	}
}

// ReadFrom reads one datagram, as ReadMsgUDP does.
func (c *Conn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, _, _, addr, err := c.ReadMsgUDP(b, nil)
	if addr == nil {
		return n, nil, err
	}
	return n, addr, err
}

// reader is the scratch space of one reading caller.
type reader struct {
	mu    sync.Mutex
	iov   [][][]byte
	over  [][]byte
	frame [maxFrame + overflowLen]byte
}

// prepare gives each message a second buffer for the bytes of a parity
// frame past the caller's buffer.
func (r *reader) prepare(ms []ipv4.Message) error {
	for len(r.iov) < len(ms) {
		r.iov = append(r.iov, make([][]byte, 2))
		r.over = append(r.over, make([]byte, overflowLen))
	}
	for i := range ms {
		if len(ms[i].Buffers) == 0 {
			return errors.New("fec: a message without a buffer")
		}
		r.iov[i][0], r.iov[i][1] = ms[i].Buffers[0], r.over[i]
		ms[i].Buffers = r.iov[i]
	}
	return nil
}

// filter handles the n datagrams read into ms, keeps the ones for quic-go
// at the front, in order, and returns how many there are.
func (c *Conn) filter(ms []ipv4.Message, r *reader) int {
	out := 0
	for i := range ms {
		m := &ms[i]
		buf := m.Buffers[0]
		keep := true
		if IsFrame(buf[:min(m.N, len(buf))]) {
			keep = c.handleFrame(m, r, i)
		} else {
			// A datagram longer than quic-go's buffer reaches it truncated,
			// as without this wrapper.
			m.N = min(m.N, len(buf))
			if p := c.lookupAddr(m.Addr); p != nil {
				p.received(buf[:m.N])
			}
		}
		if !keep {
			continue
		}
		if out != i {
			o := &ms[out]
			o.N = copy(o.Buffers[0], buf[:m.N])
			o.NN = copy(o.OOB, m.OOB[:m.NN])
			o.Flags, o.Addr = m.Flags, m.Addr
		}
		out++
	}
	return out
}

// handleFrame reads the FEC frame in m (message i of the batch). It
// reports whether m now holds a datagram for quic-go: one rebuilt from a
// parity, in the parity's place and with its control messages.
func (c *Conn) handleFrame(m *ipv4.Message, r *reader, i int) bool {
	buf := m.Buffers[0]
	head := min(m.N, len(buf))
	tail := m.N - head
	if tail > len(r.over[i]) || m.Flags&syscall.MSG_TRUNC != 0 {
		c.stats.dropped.Add(1)
		return false
	}
	frame := r.frame[:m.N]
	copy(frame, buf[:head])
	copy(frame[head:], r.over[i][:tail])
	p := c.lookupRegistered(m.Addr)
	if p == nil {
		c.stats.dropped.Add(1)
		return false
	}
	syncOnly := false
	if !p.active.Load() {
		if frame[0] != typeParity {
			c.stats.dropped.Add(1)
			return false
		}
		// Nothing of this group was counted: its parity only marks where
		// the next one starts.
		c.activate(p)
		syncOnly = true
	}
	switch frame[0] {
	case typeParity:
		n, report := p.parity(c, frame, buf, syncOnly)
		if report {
			c.sendReport(p)
		}
		if n > 0 {
			m.N = n
			return true
		}
	case typeReport:
		rep, err := parseReport(frame)
		if err != nil {
			c.stats.dropped.Add(1)
			return false
		}
		c.stats.reportsRcv.Add(1)
		p.applyReport(rep)
	default:
		c.stats.dropped.Add(1)
	}
	return false
}

func (c *Conn) sendReport(p *peer) {
	p.rmu.Lock()
	rep := p.rep
	p.rmu.Unlock()
	var b [reportLen]byte
	frame := rep.append(b[:0])
	p.smu.Lock()
	defer p.smu.Unlock()
	if p.closed {
		return
	}
	if _, _, err := c.PacketConn.WriteMsgUDP(frame, p.oob, p.addr); err == nil {
		c.stats.reportsSent.Add(1)
	}
}

// peer is the state of one protected path: the open group of what is sent
// there (guarded by smu) and of what comes from there (rmu).
type peer struct {
	addr   *net.UDPAddr
	refs   int         // Enables and Allows not yet undone; guarded by Conn.mu
	active atomic.Bool // protected, not only allowed; set under Conn.mu

	smu     sync.Mutex
	k       int    // group size
	n       int    // datagrams in the open group
	group   uint16 // sequence number of the open group
	acc     [MaxData]byte
	accLen  int
	lenXor  uint16
	sum     uint16
	oob     []byte // the last write's control messages, GSO removed
	timer   *time.Timer
	armed   uint16 // the group the timer flushes
	frame   [maxFrame]byte
	lossEst float64
	last    report // the last report the estimate took in
	closed  bool

	rmu         sync.Mutex
	racc        [MaxData]byte
	raccLen     int
	rn          int // datagrams in the open group; MaxGroup+1: too many
	rlenXor     uint16
	rsum        uint16
	rgroup      uint16
	synced      bool
	rep         report
	sinceReport int
}

func (p *peer) stop() {
	p.smu.Lock()
	p.closed = true
	p.smu.Unlock()
	p.timer.Stop()
}

// add puts one sent datagram into the open group; p.smu is held.
func (p *peer) add(c *Conn, b []byte) {
	if len(b) == 0 || len(b) > MaxData || p.closed {
		return
	}
	if p.n == 0 {
		p.armed = p.group
		p.timer.Reset(c.cfg.FlushDelay)
	}
	subtle.XORBytes(p.acc[:len(b)], p.acc[:len(b)], b)
	p.accLen = max(p.accLen, len(b))
	p.lenXor ^= uint16(len(b))
	p.sum += checkWord(b)
	p.n++
	if p.n >= p.k {
		p.timer.Stop()
		p.flush(c)
	}
}

func (p *peer) onTimer(c *Conn) {
	p.smu.Lock()
	defer p.smu.Unlock()
	if !p.closed && p.n > 0 && p.group == p.armed {
		p.flush(c)
	}
}

// flush sends the open group's parity and opens the next; p.smu is held.
func (p *peer) flush(c *Conn) {
	frame := appendParityHeader(p.frame[:0], p.n, p.group, p.lenXor, p.sum)
	frame = append(frame, p.acc[:p.accLen]...)
	if _, _, err := c.PacketConn.WriteMsgUDP(frame, p.oob, p.addr); err == nil {
		c.stats.paritySent.Add(1)
		c.stats.protected.Add(uint64(p.n))
	}
	clear(p.acc[:p.accLen])
	p.accLen, p.lenXor, p.sum, p.n = 0, 0, 0, 0
	p.group++
}

// applyReport updates the loss estimate and the group size from what the
// peer saw.
func (p *peer) applyReport(r report) {
	p.smu.Lock()
	defer p.smu.Unlock()
	if r.covered < p.last.covered || r.lost < p.last.lost {
		// The peer started over (a new connection on the same address).
		p.last = r
		return
	}
	covered := r.covered - p.last.covered
	if covered < minReportCovered {
		return
	}
	loss := float64(r.lost-p.last.lost) / float64(covered)
	p.lossEst = 0.75*p.lossEst + 0.25*loss
	p.k = groupFor(p.lossEst)
	p.last = r
}

// received adds a datagram that arrived from the peer to the open group.
func (p *peer) received(b []byte) {
	if len(b) == 0 || len(b) > MaxData {
		return
	}
	p.rmu.Lock()
	defer p.rmu.Unlock()
	if p.rn > MaxGroup {
		return
	}
	subtle.XORBytes(p.racc[:len(b)], p.racc[:len(b)], b)
	p.raccLen = max(p.raccLen, len(b))
	p.rlenXor ^= uint16(len(b))
	p.rsum += checkWord(b)
	p.rn++
}

// parity closes the open group with its parity frame. When the group lost
// exactly one datagram, it rebuilds it into dst and returns its length;
// with syncOnly the frame only marks where the next group starts. report
// says a loss report is due.
func (p *peer) parity(c *Conn, frame, dst []byte, syncOnly bool) (n int, report bool) {
	pf, err := parseParity(frame)
	if err != nil {
		c.stats.dropped.Add(1)
		return 0, false
	}
	p.rmu.Lock()
	defer p.rmu.Unlock()
	// A group follows the previous one in sequence, or is the sender's
	// first: the receiver may have missed the start of that one (it was
	// enabled later), which the sum check catches.
	if !syncOnly && ((p.synced && pf.group == p.rgroup+1) || (!p.synced && pf.group == 0)) {
		n = p.rebuild(c, pf, dst)
	}
	p.rgroup, p.synced = pf.group, true
	clear(p.racc[:p.raccLen])
	p.raccLen, p.rn, p.rlenXor, p.rsum = 0, 0, 0, 0
	p.sinceReport++
	if p.sinceReport >= reportEvery {
		p.sinceReport = 0
		report = true
	}
	return n, report
}

// rebuild settles a group that followed the previous one; p.rmu is held.
func (p *peer) rebuild(c *Conn, pf parity, dst []byte) int {
	missing := pf.k - p.rn
	if missing < 0 {
		c.stats.mismatched.Add(1)
		return 0
	}
	p.rep.groups++
	p.rep.covered += uint32(pf.k)
	p.rep.lost += uint32(missing)
	c.stats.groups.Add(1)
	c.stats.lost.Add(uint64(missing))
	switch {
	case missing == 0:
		return 0
	case missing > 1:
		c.stats.unrecovered.Add(uint64(missing))
		return 0
	}
	n := int(p.rlenXor ^ pf.lenXor)
	if n == 0 || n > len(pf.payload) || n > len(dst) || p.raccLen > len(pf.payload) {
		c.stats.mismatched.Add(1)
		c.stats.unrecovered.Add(1)
		return 0
	}
	out := dst[:n]
	subtle.XORBytes(out, p.racc[:n], pf.payload[:n])
	if p.rsum+checkWord(out) != pf.sum || IsFrame(out) {
		c.stats.mismatched.Add(1)
		c.stats.unrecovered.Add(1)
		return 0
	}
	p.rep.recovered++
	c.stats.recovered.Add(1)
	return n
}
