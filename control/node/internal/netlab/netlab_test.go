package netlab

import (
	"errors"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/anyedge/anyedge/internal/needs"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestBlackHole: a listener inside the namespace answers over the veth
// until the link is set down; then a dial neither connects nor is refused,
// it times out.
func TestBlackHole(t *testing.T) {
	if err := Available(); err != nil {
		needs.Skip(t, err)
	}
	l, err := New()
	if err != nil {
		needs.Skip(t, "cannot build a network namespace here: ", err)
	}
	defer func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
		if err := l.Close(); err != nil { // idempotent
			t.Error(err)
		}
	}()
	if !l.HostAddr.Is4() || !l.PeerAddr.Is4() || l.HostAddr.As4()[0] != 198 || l.HostAddr.As4()[1] != 19 {
		t.Fatalf("addresses %s, %s outside 198.19.0.0/16", l.HostAddr, l.PeerAddr)
	}
	ln, err := l.Listen(l.PeerAddr.String() + ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	c, err := net.DialTimeout("tcp", ln.Addr().String(), 2*time.Second)
	if err != nil {
		t.Fatalf("dial through the veth: %v", err)
	}
	_ = c.Close()
	if err := l.SetPeerDown(); err != nil {
		t.Fatal(err)
	}
	_, err = net.DialTimeout("tcp", ln.Addr().String(), 300*time.Millisecond)
	var ne net.Error
	if err == nil || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("dial after link down: %v, want a timeout", err)
	}
	_ = ln.Close()
	<-accepted
}
