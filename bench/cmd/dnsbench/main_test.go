package main

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestRun: a short run measures both servers and prints the table.
func TestRun(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(&out, 4, 200*time.Millisecond, 1))
	require.Contains(t, out.String(), "| anyedge edge/dns |")
	require.Contains(t, out.String(), "anyedge / bare:")
}
