package edge

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anyedge/anyedge/backbone"
	"github.com/anyedge/anyedge/edge/router"
)

// suspects is the edge's own short-lived view of endpoints and regions
// that failed to answer in time, so that only the first flow pays the
// hedge delay until its region's health push (or its unreachability)
// catches up. It wraps the backbone's view for the router.
//
//   - An endpoint is suspected when a hedged attempt won over a slow
//     answer from it: new flows avoid it for the hold time.
//   - A region is suspected when an attempt's whole connection stayed
//     silent until the hedge (the silence is the region's or its path's,
//     not an endpoint's): new flows try other regions first, until the
//     region speaks again on that connection, the connection closes (the
//     pool then takes over) or the hold time passes.
type suspects struct {
	regions atomic.Pointer[Regions] // swapped whole by a reload
	hold    time.Duration

	// mu guards until and silent.
	mu     sync.RWMutex
	until  map[suspectKey]time.Time
	silent map[string]silentRegion
	// nsilent is len(silent), read without the lock on every pick.
	nsilent atomic.Int32
}

type suspectKey struct{ region, endpoint string }

type silentRegion struct {
	since backbone.Silence
	until time.Time
}

var _ router.View = (*suspects)(nil)

func newSuspects(regions Regions, hold time.Duration) *suspects {
	s := &suspects{hold: hold, until: map[suspectKey]time.Time{}, silent: map[string]silentRegion{}}
	s.setRegions(regions)
	return s
}

// current returns the backbone clients in force.
func (s *suspects) current() Regions { return *s.regions.Load() }

// setRegions replaces the backbone clients (a reload).
func (s *suspects) setRegions(r Regions) { s.regions.Store(&r) }

// RegionRTT implements router.View.
func (s *suspects) RegionRTT(region string) (time.Duration, bool) {
	return s.current().RegionRTT(region)
}

// EndpointHealthy implements router.View: the region's view, less the
// endpoints this edge suspects.
func (s *suspects) EndpointHealthy(region, id string) bool {
	if !s.current().EndpointHealthy(region, id) {
		return false
	}
	s.mu.RLock()
	t, ok := s.until[suspectKey{region, id}]
	s.mu.RUnlock()
	return !ok || time.Now().After(t)
}

// Destination implements router.CustomView: the regions' custom routing
// verdicts.
func (s *suspects) Destination(region, subnet string, dest netip.AddrPort) (allowed, up, known bool) {
	return s.current().Destination(region, subnet, dest)
}

var _ router.CustomView = (*suspects)(nil)

// suspect avoids an endpoint for the hold time.
func (s *suspects) suspect(region, id string) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.until[suspectKey{region, id}] = now.Add(s.hold)
	for k, t := range s.until { // keep the map small
		if now.After(t) {
			delete(s.until, k)
		}
	}
}

// suspectRegion avoids a region while the connection of since stays
// silent, for at most the hold time.
func (s *suspects) suspectRegion(region string, since backbone.Silence) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.silent[region] = silentRegion{since: since, until: time.Now().Add(s.hold)}
	s.nsilent.Store(int32(len(s.silent)))
}

// regionSilent reports whether new flows should try other regions before
// region: it is suspected and still silent.
func (s *suspects) regionSilent(region string) bool {
	if s.nsilent.Load() == 0 {
		return false
	}
	s.mu.RLock()
	r, ok := s.silent[region]
	s.mu.RUnlock()
	if !ok {
		return false
	}
	if r.since.Silent() && !r.since.Closed() && time.Now().Before(r.until) {
		return true
	}
	s.mu.Lock()
	if cur, ok := s.silent[region]; ok && cur == r {
		delete(s.silent, region)
		s.nsilent.Store(int32(len(s.silent)))
	}
	s.mu.Unlock()
	return false
}

// avoidSilent is the Exclude of a flow's first pick: regions suspected of
// silence, if any.
func (s *suspects) avoidSilent(region, id string) bool {
	return id == "" && s.regionSilent(region)
}
