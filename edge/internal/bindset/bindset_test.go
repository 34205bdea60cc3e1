package bindset_test

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/anyedge/anyedge/edge/internal/bindset"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type portRange struct{ From, To uint16 }

type sock struct {
	ap     netip.AddrPort
	closed *int
}

func (s sock) Close() error { *s.closed++; return nil }

func TestPlan(t *testing.T) {
	a, b := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("2001:db8::1")
	aps := bindset.Expand([]netip.Addr{a, b}, []portRange{{80, 81}, {443, 443}})
	require.Len(t, aps, 6)
	require.Equal(t, netip.AddrPortFrom(b, 443), aps[5])

	name := func(s string) string { return s }
	p, err := bindset.NewPlan([]string{"web", "api"}, func(l string) []netip.AddrPort {
		if l == "web" {
			return aps[:3]
		}
		return aps[3:]
	}, name)
	require.NoError(t, err)
	require.Equal(t, "api", p[aps[4]])
	require.ErrorContains(t, p.Add(aps[:1], "other", name), "listeners web and other both listen on 198.18.0.1:80")

	have := map[netip.AddrPort]bool{aps[0]: true, aps[5]: true}
	fresh := p.Fresh(have)
	require.Equal(t, []netip.AddrPort{aps[1], aps[2], aps[3], aps[4]}, fresh, "in order, without those bound")

	closed := 0
	n := 0
	_, err = bindset.Bind(p, have, func(ap netip.AddrPort, l string) (sock, error) {
		if n++; n == 3 {
			return sock{}, errors.New("address in use")
		}
		return sock{ap: ap, closed: &closed}, nil
	})
	require.ErrorContains(t, err, "in use")
	require.Equal(t, 2, closed, "a failed Bind closes what it bound")
	socks, err := bindset.Bind(p, have, func(ap netip.AddrPort, l string) (sock, error) { return sock{ap: ap, closed: &closed}, nil })
	require.NoError(t, err)
	require.Len(t, socks, 4)
}
