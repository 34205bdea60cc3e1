package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// echoServer echoes every connection until the listener is closed.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				_, _ = io.Copy(c, c)
				_ = c.(*net.TCPConn).CloseWrite()
				_ = c.Close()
			}()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); <-done })
	return ln.Addr().String()
}

func TestPipeCarriesBytesAndHalfClose(t *testing.T) {
	for _, conns := range []int{1, 2} {
		t.Run("conns="+strconv.Itoa(conns), func(t *testing.T) {
			target := echoServer(t)
			ctx, cancel := context.WithCancel(context.Background())
			log := slog.New(slog.DiscardHandler)
			srvAddr, cliAddr := make(chan net.Addr, 1), make(chan net.Addr, 1)
			srvDone, cliDone := make(chan error, 1), make(chan error, 1)
			go func() {
				srvDone <- runServer(ctx, log, "127.0.0.1:0", target, func(a net.Addr) { srvAddr <- a })
			}()
			sa := <-srvAddr
			go func() {
				cliDone <- runClient(ctx, log, "127.0.0.1:0", sa.String(), conns, func(a net.Addr) { cliAddr <- a })
			}()
			var ca net.Addr
			select {
			case ca = <-cliAddr:
			case err := <-cliDone:
				t.Fatalf("client: %v", err)
			}
			defer func() {
				cancel()
				<-cliDone
				<-srvDone
			}()

			for range 3 {
				c, err := net.DialTimeout("tcp", ca.String(), 2*time.Second)
				require.NoError(t, err)
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				payload := make([]byte, 1<<20)
				_, _ = rand.Read(payload)
				got := make(chan []byte, 1)
				go func() {
					b, _ := io.ReadAll(c)
					got <- b
				}()
				_, err = c.Write(payload)
				require.NoError(t, err)
				require.NoError(t, c.(*net.TCPConn).CloseWrite())
				require.True(t, bytes.Equal(payload, <-got), "echoed bytes differ")
				require.NoError(t, c.Close())
			}
		})
	}
}
