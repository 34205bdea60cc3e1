package backbone

import (
	"context"
	"sync/atomic"

	"github.com/quic-go/quic-go"
)

// DatagramFunc receives every QUIC DATAGRAM an edge's connection delivers.
// It runs on the connection's receive loop: it must not block (quic-go
// keeps only 128 unread datagrams per connection and drops the rest) and
// must not keep b after returning.
type DatagramFunc func(conn *quic.Conn, b []byte)

// DatagramHandler is implemented by a Handler that also serves datagrams.
// The Server calls ServeDatagrams once per connection, in its own
// goroutine, as soon as the connection is accepted; it must return when
// ctx (the connection's context) ends.
type DatagramHandler interface {
	ServeDatagrams(ctx context.Context, peer Peer)
}

// datagrams is the datagram state of a Client.
type datagrams struct {
	fn atomic.Pointer[DatagramFunc]
	// unhandled counts datagrams that arrived with no DatagramFunc set;
	// overflow those dropped because the backlog was full.
	unhandled, overflow atomic.Int64
}

// HandleDatagrams sets the function that receives the datagrams of every
// connection of the pool (nil stops delivery; datagrams are then counted
// and dropped). It may be called at any time.
func (c *Client) HandleDatagrams(fn DatagramFunc) {
	if fn == nil {
		c.dgram.fn.Store(nil)
		return
	}
	c.dgram.fn.Store(&fn)
}

// DroppedDatagrams is how many received datagrams were dropped: arrived
// while no DatagramFunc was set, or found the backlog full. (Those quic-go
// itself drops when its own queue overflows are not counted here.)
func (c *Client) DroppedDatagrams() int64 {
	return c.dgram.unhandled.Load() + c.dgram.overflow.Load()
}

// DatagramBacklog is how many received datagrams a connection holds
// between quic-go's short queue (128, overflow silently dropped) and the
// DatagramFunc: the receive loop only moves datagrams into this backlog,
// so that a slow send syscall downstream does not stall the draining.
const DatagramBacklog = 4096

// startDatagrams runs conn's datagram receive loop, and the loop that hands
// datagrams to the DatagramFunc, in goroutines of their own and returns a
// function that waits for both; they end with conn.
func (c *Client) startDatagrams(conn *quic.Conn) (wait func()) {
	done := make(chan struct{})
	backlog := make(chan []byte, DatagramBacklog)
	go func() {
		defer close(backlog)
		ctx := conn.Context()
		for {
			b, err := conn.ReceiveDatagram(ctx)
			if err != nil {
				return
			}
			select {
			case backlog <- b:
			default:
				c.dgram.overflow.Add(1)
			}
		}
	}()
	go func() {
		defer close(done)
		for b := range backlog {
			if fn := c.dgram.fn.Load(); fn != nil {
				(*fn)(conn, b)
			} else {
				c.dgram.unhandled.Add(1)
			}
		}
	}()
	return func() { <-done }
}

// Conn returns the connection the stream was opened on: a UDP flow sends
// its datagrams on the connection of its stream.
func (s Stream) Conn() *quic.Conn { return s.conn }
