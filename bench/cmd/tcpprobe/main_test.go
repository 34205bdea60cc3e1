package main

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestProbesAgainstEcho(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() { done <- serveEcho(ctx, "127.0.0.1:0", func(a net.Addr) { addrc <- a }) }()
	a := (<-addrc).String()
	defer func() {
		cancel()
		require.ErrorIs(t, <-done, context.Canceled)
	}()

	tests := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"latency", func(t *testing.T) {
			res, err := latency(a, 50, time.Second)
			require.NoError(t, err)
			require.Equal(t, 50, res.N)
			require.Zero(t, res.Errors)
			require.Positive(t, res.P50)
			require.LessOrEqual(t, res.P50, res.P99)
			require.LessOrEqual(t, res.P99, res.P999)
		}},
		{"rate", func(t *testing.T) {
			res, err := rate(a, 4, 200*time.Millisecond, time.Second)
			require.NoError(t, err)
			require.Positive(t, res.Conns)
			require.Zero(t, res.Errors)
			require.Positive(t, res.PerSec)
		}},
		{"echo holds idle connections", func(t *testing.T) {
			c, err := once(a, time.Second)
			require.NoError(t, err)
			defer c.Close()
			// Still open and echoing after a first exchange.
			_, err = c.Write([]byte("y"))
			require.NoError(t, err)
			b := make([]byte, 1)
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			_, err = c.Read(b)
			require.NoError(t, err)
			require.Equal(t, byte('y'), b[0])
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.run)
	}
}

func TestLatencyFailsWithoutServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	a := ln.Addr().String()
	require.NoError(t, ln.Close())
	_, err = latency(a, 3, 200*time.Millisecond)
	require.Error(t, err)
}
