package backbone_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/backbone"
	"github.com/anyedge/anyedge/backbone/pki"
	"github.com/anyedge/anyedge/backbone/wire"
)

func TestMetricsOnRejectCountsAndLogs(t *testing.T) {
	var buf bytes.Buffer
	m := &backbone.Metrics{}
	onReject := m.OnReject(slog.New(slog.NewTextHandler(&buf, nil)))
	onReject("198.18.0.9:4433", fmt.Errorf("refused: %w", pki.ErrUnknownNode))
	for range 10 { // a burst: counted, logged once per reason
		onReject("198.18.0.9:4433", pki.ErrNoCertificate)
	}
	require.Equal(t, map[string]int64{"unknown_node": 1, "no_certificate": 10}, m.HandshakeRefused())
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 2, "refusal logs are not rate-limited")
	require.Contains(t, lines[1], "reason=no_certificate")
	require.Contains(t, lines[0], "remote=198.18.0.9:4433")
	require.Contains(t, lines[0], "reason=unknown_node")
	require.Contains(t, lines[0], "component=backbone-server")
}

func TestMetricsStreamsRefused(t *testing.T) {
	m := &backbone.Metrics{}
	require.Empty(t, m.StreamsRefused())
	m.CountStreamRefused(wire.CodeBadHeader)
	m.CountStreamRefused(wire.CodeBadHeader)
	m.CountStreamRefused(wire.CodeNotAllowed)
	require.Equal(t, map[wire.Code]int64{wire.CodeBadHeader: 2, wire.CodeNotAllowed: 1}, m.StreamsRefused())
	require.Empty(t, (&backbone.Metrics{}).HandshakeRefused())
}
