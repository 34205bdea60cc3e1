// Package sdnotify speaks systemd's service notification protocol
// (sd_notify(3)): one datagram per state change to the unix socket named
// by $NOTIFY_SOCKET. A node says READY=1 once it serves, STOPPING=1 when
// it starts to stop, and WATCHDOG=1 while its data path is alive; with
// WatchdogSec= in the unit, systemd kills a node that stops saying so.
package sdnotify

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"
)

// Notifier sends notifications to the service manager. A nil *Notifier
// (no $NOTIFY_SOCKET) sends nothing and has no watchdog.
type Notifier struct {
	addr     *net.UnixAddr
	watchdog time.Duration

	// mu guards conn.
	mu   sync.Mutex
	conn *net.UnixConn
}

// FromEnv reads $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID through
// getenv (os.Getenv). It returns nil, nil when the process was not started
// by a service manager that listens. The watchdog is on only when
// WATCHDOG_USEC is set and WATCHDOG_PID, if set, is pid.
func FromEnv(getenv func(string) string, pid int) (*Notifier, error) {
	sock := getenv("NOTIFY_SOCKET")
	if sock == "" {
		return nil, nil
	}
	if sock[0] != '/' && sock[0] != '@' {
		return nil, fmt.Errorf("NOTIFY_SOCKET=%q: want an absolute path or an abstract name (@…)", sock)
	}
	n := &Notifier{addr: &net.UnixAddr{Name: sock, Net: "unixgram"}}
	if us := getenv("WATCHDOG_USEC"); us != "" {
		v, err := strconv.ParseUint(us, 10, 63)
		if err != nil || v == 0 {
			return nil, fmt.Errorf("WATCHDOG_USEC=%q: want a positive number of microseconds", us)
		}
		if p := getenv("WATCHDOG_PID"); p == "" || p == strconv.Itoa(pid) {
			n.watchdog = time.Duration(v) * time.Microsecond
		}
	}
	return n, nil
}

// Watchdog is the interval within which the service manager wants
// WATCHDOG=1; zero when the watchdog is off.
func (n *Notifier) Watchdog() time.Duration {
	if n == nil {
		return 0
	}
	return n.watchdog
}

// Ready says the service has started (READY=1).
func (n *Notifier) Ready() error { return n.Send("READY=1") }

// Stopping says the service is stopping (STOPPING=1).
func (n *Notifier) Stopping() error { return n.Send("STOPPING=1") }

// Alive keeps the watchdog from firing (WATCHDOG=1).
func (n *Notifier) Alive() error { return n.Send("WATCHDOG=1") }

// Send sends one notification, such as "STATUS=draining".
func (n *Notifier) Send(state string) error {
	if n == nil {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.conn == nil {
		c, err := net.DialUnix("unixgram", nil, n.addr)
		if err != nil {
			return fmt.Errorf("sd_notify: %w", err)
		}
		n.conn = c
	}
	if _, err := n.conn.Write([]byte(state)); err != nil {
		// The manager may have restarted: dial again next time.
		_ = n.conn.Close()
		n.conn = nil
		return fmt.Errorf("sd_notify %s: %w", state, err)
	}
	return nil
}

// Close releases the socket. It is idempotent.
func (n *Notifier) Close() error {
	if n == nil {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.conn == nil {
		return nil
	}
	err := n.conn.Close()
	n.conn = nil
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}
