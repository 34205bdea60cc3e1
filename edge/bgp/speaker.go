package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
)

// ErrAlreadyRun is returned by a second call of Run.
var ErrAlreadyRun = errors.New("bgp speaker already run")

// Speaker announces a set of prefixes to the configured neighbours. Build it
// with New, start it with Run; SetAnnounce, SetGracefulShutdown, Peers and
// Announced are safe from any goroutine at any time.
type Speaker struct {
	cfg   Config
	attrs attributes
	log   *slog.Logger
	kick  chan struct{} // capacity 1: the wanted state changed

	// mu guards the fields below.
	mu        sync.Mutex
	want      map[netip.Prefix]struct{} // what SetAnnounce asked for
	graceful  bool                      // what SetGracefulShutdown asked for
	announced map[netip.Prefix]struct{} // what the RIB holds now
	peers     map[netip.Addr]*peerState
	srv       *server.BgpServer // set while Run runs
	ran       bool
	stopped   bool // Run has finished: no more peer events are logged
}

// New validates cfg and returns a Speaker that announces nothing yet.
func New(cfg Config, logger *slog.Logger) (*Speaker, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("bgp config: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Speaker{
		cfg:       cfg,
		attrs:     attributesOf(cfg),
		log:       logger.With("component", "bgp"),
		kick:      make(chan struct{}, 1),
		want:      make(map[netip.Prefix]struct{}),
		announced: make(map[netip.Prefix]struct{}),
		peers:     make(map[netip.Addr]*peerState),
	}
	for _, n := range cfg.Neighbors {
		s.peers[n.Address.Unmap()] = &peerState{state: "idle"}
	}
	return s, nil
}

// SetAnnounce sets the prefixes that should be announced now, replacing the
// previous set. Prefixes left out are withdrawn at once; a prefix withdrawn
// less than HoldDown ago is announced again only when the hold-down ends.
// Invalid prefixes are logged and ignored.
func (s *Speaker) SetAnnounce(prefixes []netip.Prefix) {
	want := make(map[netip.Prefix]struct{}, len(prefixes))
	for _, p := range prefixes {
		n, ok := normalize(p)
		if !ok {
			s.log.Warn("ignoring invalid prefix", "prefix", p)
			continue
		}
		want[n] = struct{}{}
	}
	s.mu.Lock()
	same := maps.Equal(want, s.want)
	s.want = want
	s.mu.Unlock()
	if !same {
		s.poke()
	}
}

// SetGracefulShutdown adds (on) or removes (off) the GRACEFUL_SHUTDOWN
// community 65535:0 on every announcement, re-advertising what is announced.
func (s *Speaker) SetGracefulShutdown(on bool) {
	s.mu.Lock()
	same := s.graceful == on
	s.graceful = on
	s.mu.Unlock()
	if !same {
		s.log.Info("graceful shutdown community", "on", on)
		s.poke()
	}
}

// Announced returns the prefixes currently offered to the neighbours,
// sorted.
func (s *Speaker) Announced() []netip.Prefix {
	s.mu.Lock()
	defer s.mu.Unlock()
	return sortedPrefixes(s.announced)
}

func (s *Speaker) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Run starts the BGP server, adds the neighbours and keeps the announced
// prefixes in line with SetAnnounce until ctx ends. Then it withdraws every
// prefix, closes the sessions (Cease notification) and returns nil. Run may
// be called once.
//
// GoBGP's main loop goroutine cannot be stopped: it stays parked, idle, after
// Run returns (one per Speaker).
func (s *Speaker) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.ran {
		s.mu.Unlock()
		return ErrAlreadyRun
	}
	s.ran = true
	s.mu.Unlock()

	for _, n := range s.cfg.Neighbors {
		if n.Password == "" {
			continue
		}
		if err := md5Supported(); err != nil {
			return fmt.Errorf("neighbor %s: password set, but this kernel cannot sign TCP segments with MD5 (%w); "+
				"refusing to run the session unauthenticated", n.Address, err)
		}
	}
	glog := &gobgpLogger{log: s.log, onError: s.recordError}
	defer glog.close()
	srv := server.NewBgpServer(server.LoggerOption(glog))
	go srv.Serve()

	listen := int32(-1)
	if s.cfg.ListenPort > 0 {
		listen = int32(s.cfg.ListenPort)
	}
	global := &api.Global{Asn: s.cfg.LocalASN, RouterId: s.cfg.RouterID.String(), ListenPort: listen}
	if err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: global}); err != nil {
		return fmt.Errorf("start bgp: %w", err)
	}
	defer func() {
		if err := srv.StopBgp(context.Background(), &api.StopBgpRequest{}); err != nil {
			s.log.Warn("stop bgp", "err", err)
		}
		s.mu.Lock()
		s.srv = nil
		s.stopped = true
		for _, p := range s.peers {
			p.setState("idle", time.Now())
		}
		s.mu.Unlock()
		s.log.Info("bgp stopped")
	}()

	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	if err := srv.WatchEvent(watchCtx, &api.WatchEventRequest{Peer: &api.WatchEventRequest_Peer{}}, s.onEvent); err != nil {
		return fmt.Errorf("watch peer events: %w", err)
	}
	for _, n := range s.cfg.Neighbors {
		if err := srv.AddPeer(ctx, &api.AddPeerRequest{Peer: s.peerConfig(n)}); err != nil {
			return fmt.Errorf("add neighbor %s: %w", n.Address, err)
		}
	}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	s.log.Info("bgp started", "asn", s.cfg.LocalASN, "router_id", s.cfg.RouterID, "neighbors", len(s.cfg.Neighbors), "listen_port", s.cfg.ListenPort)

	s.loop(ctx, gobgpRIB{srv: srv, attrs: s.attrs})
	return nil
}

// rib is where the loop puts announcements; GoBGP's global RIB in
// production, a fake in unit tests.
type rib interface {
	announce(p netip.Prefix, graceful bool) error
	withdraw(p netip.Prefix) error
}

type gobgpRIB struct {
	srv   *server.BgpServer
	attrs attributes
}

func (r gobgpRIB) announce(p netip.Prefix, graceful bool) error {
	path, err := r.attrs.announcement(p, graceful)
	if err != nil {
		return err
	}
	_, err = r.srv.AddPath(context.Background(), &api.AddPathRequest{Path: path})
	return err
}

func (r gobgpRIB) withdraw(p netip.Prefix) error {
	path, err := withdrawal(p)
	if err != nil {
		return err
	}
	return r.srv.DeletePath(context.Background(), &api.DeletePathRequest{Path: path})
}

// retryAfter is how long the loop waits to retry a failed RIB change.
const retryAfter = time.Second

// loop reconciles the RIB with the wanted state until ctx ends, then
// withdraws everything.
func (s *Speaker) loop(ctx context.Context, r rib) {
	withdrawnAt := make(map[netip.Prefix]time.Time)
	advGraceful := false
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		var next time.Time
		advGraceful, next = s.reconcile(r, withdrawnAt, advGraceful)
		if !next.IsZero() {
			timer.Reset(time.Until(next))
		}
		select {
		case <-ctx.Done():
			s.mu.Lock()
			all := sortedPrefixes(s.announced)
			s.mu.Unlock()
			for _, p := range all {
				s.withdraw(r, p)
			}
			return
		case <-s.kick:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// reconcile applies one round of changes: withdrawals first, then a
// re-advertisement if the graceful-shutdown flag changed, then the
// announcements whose hold-down is over. It returns the flag now advertised
// and when it needs to run again (zero: only on a change).
func (s *Speaker) reconcile(r rib, withdrawnAt map[netip.Prefix]time.Time, advGraceful bool) (bool, time.Time) {
	s.mu.Lock()
	want := maps.Clone(s.want)
	graceful := s.graceful
	have := maps.Clone(s.announced)
	s.mu.Unlock()

	now := time.Now()
	var next time.Time
	later := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	for _, p := range sortedPrefixes(have) {
		if _, ok := want[p]; !ok {
			s.withdraw(r, p)
			withdrawnAt[p] = now
			delete(have, p)
		}
	}
	if graceful != advGraceful {
		ok := true
		for _, p := range sortedPrefixes(have) {
			if err := r.announce(p, graceful); err != nil {
				s.log.Error("re-advertise", "prefix", p, "graceful_shutdown", graceful, "err", err)
				ok = false
			}
		}
		if ok {
			advGraceful = graceful
		} else {
			later(now.Add(retryAfter))
		}
	}
	for _, p := range sortedPrefixes(want) {
		if _, ok := have[p]; ok {
			continue
		}
		if t, ok := withdrawnAt[p]; ok && now.Sub(t) < s.cfg.HoldDown {
			due := t.Add(s.cfg.HoldDown)
			s.log.Debug("announcement held down", "prefix", p, "until", due)
			later(due)
			continue
		}
		if err := r.announce(p, graceful); err != nil {
			s.log.Error("announce", "prefix", p, "err", err)
			later(now.Add(retryAfter))
			continue
		}
		delete(withdrawnAt, p)
		s.mu.Lock()
		s.announced[p] = struct{}{}
		s.mu.Unlock()
		s.log.Info("announce", "prefix", p, "graceful_shutdown", graceful)
	}
	for p, t := range withdrawnAt {
		if now.Sub(t) >= s.cfg.HoldDown {
			delete(withdrawnAt, p)
		}
	}
	return advGraceful, next
}

// withdraw removes p from the RIB; p counts as withdrawn even if GoBGP
// failed, since it is then gone with the server.
func (s *Speaker) withdraw(r rib, p netip.Prefix) {
	if err := r.withdraw(p); err != nil {
		s.log.Error("withdraw", "prefix", p, "err", err)
	} else {
		s.log.Info("withdraw", "prefix", p)
	}
	s.mu.Lock()
	delete(s.announced, p)
	s.mu.Unlock()
}

func sortedPrefixes(m map[netip.Prefix]struct{}) []netip.Prefix {
	ps := slices.Collect(maps.Keys(m))
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return ps
}
