package backbone

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/anyedge/anyedge/backbone/wire"
)

// Regions gives the backbone client of each region by name. It is the
// edge's view of the world: which regions are reachable, how far they are,
// and what they say of their endpoints.
type Regions map[string]*Client

// RegionRTT returns the smoothed RTT to region; reachable is false when no
// connection to it is up.
func (r Regions) RegionRTT(region string) (rtt time.Duration, reachable bool) {
	c := r[region]
	if c == nil {
		return 0, false
	}
	return c.RTT()
}

// EndpointHealthy reports whether region considers the endpoint healthy. An
// endpoint the region has not reported yet counts as healthy, so that new
// endpoints take traffic before their first probe.
func (r Regions) EndpointHealthy(region, id string) bool {
	c := r[region]
	if c == nil {
		return false
	}
	healthy, known := c.EndpointHealthy(id)
	return healthy || !known
}

// OpenFlow opens a stream to region, sends hdr and waits up to timeout for
// the region's answer. On CodeOK it returns the stream, ready for payload;
// a refusal is a *wire.RefusedError; anything else means the region could
// not be reached in time.
func (r Regions) OpenFlow(ctx context.Context, region string, hdr *wire.Header, timeout time.Duration) (Stream, error) {
	client := r[region]
	if client == nil {
		return Stream{}, fmt.Errorf("%s: %w", region, ErrUnreachable)
	}
	octx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	str, err := client.OpenStream(octx)
	if err != nil {
		return str, err
	}
	fail := func(err error) (Stream, error) {
		str.CancelRead(wire.StreamReset)
		str.CancelWrite(wire.StreamReset)
		str.Release()
		return Stream{}, err
	}
	var buf [wire.MaxHeaderLen]byte
	b, err := wire.AppendHeader(buf[:0], hdr)
	if err != nil {
		return fail(err)
	}
	if _, err := str.Write(b); err != nil {
		return fail(fmt.Errorf("%s: write header: %w", region, err))
	}
	_ = str.SetReadDeadline(time.Now().Add(timeout))
	var code [1]byte
	if _, err := io.ReadFull(str, code[:]); err != nil {
		return fail(fmt.Errorf("%s: read answer: %w", region, err))
	}
	_ = str.SetReadDeadline(time.Time{})
	if c := wire.Code(code[0]); c != wire.CodeOK {
		return fail(&wire.RefusedError{Code: c})
	}
	return str, nil
}
