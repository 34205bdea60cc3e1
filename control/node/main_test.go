package node_test

import (
	"testing"

	"go.uber.org/goleak"
)

// gobgpServe is GoBGP's main loop: it has no way to stop, so it stays
// parked after an edge with BGP neighbours has stopped (edge/bgp.Run).
const gobgpServe = "github.com/osrg/gobgp/v3/pkg/server.(*BgpServer).Serve"

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction(gobgpServe)) }
