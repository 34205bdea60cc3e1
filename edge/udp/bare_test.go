package udp_test

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/backbone"
	"github.com/anyedge/anyedge/backbone/pki"
)

// bareRelay is the UDP ceiling of the benchmark: client packets read from a
// UDP socket travel as QUIC DATAGRAM frames (a one-byte flow index in
// front) on one connection to a relay that writes them to target from one
// socket per flow, and replies travel back the same way. Same process,
// same certificates, windows and socket buffers as anyedge's backbone;
// none of its routing, flow table, limits, idle timeouts, affinity, stream
// fallback or counters. At most 255 flows. Clients reach it on
// 127.0.0.1:port.
func bareRelay(t *testing.T, f *fleet, port uint16, target netip.AddrPort) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	qconf := &quic.Config{EnableDatagrams: true, MaxIdleTimeout: 30 * time.Second, KeepAlivePeriod: time.Second}
	regionStore, err := f.p.Store(regionName, nil)
	require.NoError(t, err)
	popStore, err := f.p.Store(f.pops[0], nil)
	require.NoError(t, err)
	udpSock := func() *net.UDPConn {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		require.NoError(t, err)
		backbone.SetSocketBuffers(c, slog.New(slog.DiscardHandler))
		return c
	}

	// The far side: one socket per flow index towards target.
	srvSock := udpSock()
	ln, err := (&quic.Transport{Conn: srvSock}).Listen(pki.ServerConfig(regionStore, func(string) bool { return true }, nil), qconf)
	require.NoError(t, err)
	context.AfterFunc(ctx, func() { _ = ln.Close(); _ = srvSock.Close() })
	wg.Go(func() {
		conn, err := ln.Accept(ctx)
		if err != nil {
			return
		}
		// Datagrams are drained in a tight loop (quic-go keeps only 128)
		// and written to target by a second goroutine, as anyedge does.
		backlog := make(chan []byte, 4096)
		wg.Go(func() {
			var socks [256]*net.UDPConn
			defer func() {
				for _, s := range socks {
					if s != nil {
						_ = s.Close()
					}
				}
			}()
			for b := range backlog {
				s := socks[b[0]]
				if s == nil {
					if s, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(target)); err != nil {
						continue
					}
					socks[b[0]] = s
					idx := b[0]
					wg.Go(func() {
						buf := make([]byte, 2048)
						for {
							n, err := s.Read(buf[1:])
							if err != nil {
								return
							}
							buf[0] = idx
							_ = conn.SendDatagram(buf[:1+n])
						}
					})
				}
				_, _ = s.Write(b[1:])
			}
		})
		defer close(backlog)
		for {
			b, err := conn.ReceiveDatagram(ctx)
			if err != nil {
				return
			}
			select {
			case backlog <- b:
			default:
			}
		}
	})

	// The near side: clients → datagrams, datagrams → clients.
	cliSock := udpSock()
	tr := &quic.Transport{Conn: cliSock}
	conn, err := tr.Dial(ctx, srvSock.LocalAddr(), pki.ClientConfig(popStore, regionName), qconf)
	require.NoError(t, err)
	context.AfterFunc(ctx, func() { _ = conn.CloseWithError(0, ""); _ = tr.Close(); _ = cliSock.Close() })
	front, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)))
	require.NoError(t, err)
	backbone.SetSocketBuffers(front, slog.New(slog.DiscardHandler))
	context.AfterFunc(ctx, func() { _ = front.Close() })
	var mu sync.Mutex
	clients := map[netip.AddrPort]byte{}
	var byIndex [256]netip.AddrPort
	wg.Go(func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := front.ReadFromUDPAddrPort(buf[1:])
			if err != nil {
				return
			}
			mu.Lock()
			idx, ok := clients[from]
			if !ok && len(clients) < 255 {
				idx = byte(len(clients))
				clients[from] = idx
				byIndex[idx] = from
				ok = true
			}
			mu.Unlock()
			if ok {
				buf[0] = idx
				_ = conn.SendDatagram(buf[:1+n])
			}
		}
	})
	wg.Go(func() {
		for {
			b, err := conn.ReceiveDatagram(ctx)
			if err != nil {
				return
			}
			mu.Lock()
			to := byIndex[b[0]]
			mu.Unlock()
			_, _ = front.WriteToUDPAddrPort(b[1:], to)
		}
	})
}
