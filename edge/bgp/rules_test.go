package bgp

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseCommunities(t *testing.T) {
	c, err := ParseCommunity("64512:100")
	require.NoError(t, err)
	require.Equal(t, uint32(64512)<<16|100, c)
	for _, bad := range []string{"64512:70000", "1:2:3", "a:b", "", "1:"} {
		_, err := ParseCommunity(bad)
		require.Error(t, err, bad)
	}
	lc, err := ParseLargeCommunity("64512:1:4294967295")
	require.NoError(t, err)
	require.Equal(t, [3]uint32{64512, 1, 4294967295}, lc)
	for _, bad := range []string{"1:2", "1:2:4294967296", "1:2:x"} {
		_, err := ParseLargeCommunity(bad)
		require.Error(t, err, bad)
	}
}

// TestCheckAppliesDefaults: Check judges a Config as New runs it, zero
// timers taking their defaults.
func TestCheckAppliesDefaults(t *testing.T) {
	require.Empty(t, validConfig().Check())
	c := validConfig()
	c.Neighbors[0].HoldTime = 3e9 // keepalive defaults to 3s: not below
	require.Equal(t, []Problem{{Field: "neighbors[0].keepalive", Msg: "3s must be below hold_time 3s"}}, c.Check())
}
