package healthcheck

// Subscription delivers the state changes of a Checker's endpoints without
// ever blocking the checker: changes are coalesced per endpoint until the
// subscriber reads them, so a slow reader skips intermediate states but
// always sees each endpoint's latest one.
type Subscription struct {
	c     *Checker
	ready chan struct{} // capacity 1

	// Guarded by c.mu.
	pending map[string]Status
}

// Subscribe returns a new Subscription. Its first Changes call returns the
// Status of every current endpoint, so a subscriber starts from a full view
// and then follows changes. Call Close when done.
func (c *Checker) Subscribe() *Subscription {
	s := &Subscription{c: c, ready: make(chan struct{}, 1), pending: make(map[string]Status)}
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, t := range c.targets {
		s.pending[id] = t.status
	}
	c.subs[s] = struct{}{}
	if len(s.pending) > 0 {
		s.signal()
	}
	return s
}

// Ready receives a value when Changes has something to return. One signal
// may stand for many changes.
func (s *Subscription) Ready() <-chan struct{} {
	return s.ready
}

// Changes returns, sorted by ID, the latest Status of every endpoint that
// changed since the previous call, or nil if none did. An endpoint removed
// by Checker.Update is reported with Removed set.
func (s *Subscription) Changes() []Status {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	if len(s.pending) == 0 {
		return nil
	}
	out := make([]Status, 0, len(s.pending))
	for _, st := range s.pending {
		out = append(out, st)
	}
	clear(s.pending)
	sortStatuses(out)
	return out
}

// Close stops the Subscription; later changes are not recorded. Close is
// idempotent.
func (s *Subscription) Close() {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	delete(s.c.subs, s)
	clear(s.pending)
}

// signal wakes the subscriber without blocking.
func (s *Subscription) signal() {
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

// publishLocked records st for every subscriber. c.mu must be held.
func (c *Checker) publishLocked(st Status) {
	for s := range c.subs {
		s.pending[st.ID] = st
		s.signal()
	}
}
