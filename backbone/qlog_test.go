package backbone_test

import (
	"os"
	"testing"
	"time"

	"github.com/anyedge/anyedge/backbone"
)

// With QLOGDIR set, both ends of a backbone connection write a qlog: the
// way to see a slow flow's congestion window and losses in the edge and
// the region (BENCHMARKS.md, "One flow on a clean backbone").
func TestQlogDirTracesBothEnds(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(backbone.QlogDirEnv, dir)
	l := newLab(t)
	r := l.startRegion(t, regionOpts{})
	c, stop := l.startClientLog(t, edgeName, r.addr, 1, nil)
	waitLive(t, c, 1)
	goodFlow(t, c)
	stop()
	eventually(t, 10*time.Second, func() bool {
		files, err := os.ReadDir(dir)
		return err == nil && len(files) >= 2
	}, "no qlog from each connection end in QLOGDIR")
}
