package probe

import (
	"context"
	"fmt"
	"net"
	"time"
)

// tcpProber passes when a TCP connection to addr can be established.
type tcpProber struct {
	addr    string
	timeout time.Duration
}

var _ Prober = (*tcpProber)(nil)

// Probe connects to the address and closes the connection at once.
func (p *tcpProber) Probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return fmt.Errorf("tcp: %w", err)
	}
	return conn.Close()
}
