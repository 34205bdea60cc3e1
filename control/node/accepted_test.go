package node

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/backbone/pki"
	"github.com/anyedge/anyedge/control/config"
)

// acceptedSources are the documents of the repository: the examples, and
// the test documents of control/config (its table's base document among
// them, and one file per rule the config and the nodes once disagreed on).
var acceptedSources = []string{
	"../../configs/*.yaml",
	"../../configs/testdata/*.yaml",
	"../config/testdata/*.yaml",
}

// testDocuments returns every document of acceptedSources and of this
// package's tables, by name.
func testDocuments(t testing.TB) map[string][]byte {
	docs := map[string][]byte{"mapDoc": []byte(mapDoc)}
	for _, pattern := range acceptedSources {
		files, err := filepath.Glob(pattern)
		require.NoError(t, err)
		require.NotEmpty(t, files, pattern)
		for _, f := range files {
			b, err := os.ReadFile(f)
			require.NoError(t, err)
			docs[f] = b
		}
	}
	return docs
}

// buildAll builds every node of doc as Run does (buildEdge, buildRegion:
// every constructor of every component), binding nothing.
func buildAll(doc *config.Document) error {
	names := doc.NodeNames()
	ca, err := pki.NewEphemeral(names...)
	if err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	for _, name := range names {
		n, err := doc.Node(name)
		if err != nil {
			return err
		}
		opts := Options{Doc: doc, Node: name}
		switch n.Role {
		case config.RolePoP:
			store, err := ca.Store(name, nil)
			if err != nil {
				return err
			}
			if _, err := buildEdge(opts, n, store); err != nil {
				return fmt.Errorf("edge %s: %w", name, err)
			}
		case config.RoleRegion:
			b, err := buildRegion(opts, n)
			if err != nil {
				return fmt.Errorf("region %s: %w", name, err)
			}
			_ = b.gw.Close()
		}
	}
	return nil
}

// TestAcceptedDocumentsBuild: every document of the repository that the
// config package accepts builds into every one of its nodes. A rule that
// only a component enforces (as hold_time 3500ms, refused by the BGP
// speaker, once was) fails here.
func TestAcceptedDocumentsBuild(t *testing.T) {
	accepted := 0
	for name, b := range testDocuments(t) {
		doc, err := config.Load(b, config.LoadOptions{Env: []string{}})
		if err != nil {
			continue // refused: nothing to start
		}
		accepted++
		require.NoError(t, buildAll(doc), "%s is accepted by the config package but does not build", name)
	}
	require.GreaterOrEqual(t, accepted, 4)

	// The check can fail: a document whose BGP timers only the speaker
	// refuses does not build.
	doc, err := config.Load(testDocuments(t)["../config/testdata/base.yaml"], config.LoadOptions{Env: []string{}})
	require.NoError(t, err)
	doc.Topology.PoPs[0].BGP.Neighbors[0].HoldTime = 3500 * time.Millisecond
	require.ErrorContains(t, buildAll(doc), "hold_time: 3.5s is not a whole number of seconds")
}

// FuzzAcceptedBuilds: whatever the config package accepts builds (seeds:
// the documents of TestAcceptedDocumentsBuild).
func FuzzAcceptedBuilds(f *testing.F) {
	for _, b := range testDocuments(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		doc, err := config.Load(data, config.LoadOptions{Env: []string{}})
		if err != nil {
			return
		}
		require.NoError(t, buildAll(doc))
	})
}
