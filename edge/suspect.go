package edge

import (
	"net/netip"
	"sync"
	"time"

	"github.com/anyedge/anyedge/edge/router"
)

// suspects is the edge's own short-lived view of endpoints that failed to
// answer in time: when a hedged attempt wins over a slow one, the slow
// endpoint is avoided by new flows for a while, so that only the first
// flow pays the hedge delay until its region's health push (or its
// unreachability) catches up. It wraps the backbone's view for the router.
type suspects struct {
	regions Regions
	hold    time.Duration

	// mu guards until.
	mu    sync.RWMutex
	until map[suspectKey]time.Time
}

type suspectKey struct{ region, endpoint string }

var _ router.View = (*suspects)(nil)

func newSuspects(regions Regions, hold time.Duration) *suspects {
	return &suspects{regions: regions, hold: hold, until: map[suspectKey]time.Time{}}
}

// RegionRTT implements router.View.
func (s *suspects) RegionRTT(region string) (time.Duration, bool) {
	return s.regions.RegionRTT(region)
}

// EndpointHealthy implements router.View: the region's view, less the
// endpoints this edge suspects.
func (s *suspects) EndpointHealthy(region, id string) bool {
	if !s.regions.EndpointHealthy(region, id) {
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
	return s.regions.Destination(region, subnet, dest)
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
