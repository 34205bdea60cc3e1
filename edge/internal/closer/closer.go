// Package closer ties a component's Close to its Run: Close ends a Run in
// progress as if its context had ended and waits for it to return, and a
// component that was closed cannot start running.
package closer

import (
	"context"
	"net"
	"sync"
)

// Closer is embedded in a component with Run and Close. The zero value is
// ready to use.
type Closer struct {
	// mu guards closed, cancel and running's additions.
	mu      sync.Mutex
	closed  bool
	cancel  context.CancelFunc
	running sync.WaitGroup
}

// Start begins a Run: it returns a child of ctx that Close cancels, and
// done, which Run calls when it returns. After Close it returns
// net.ErrClosed.
func (c *Closer) Start(ctx context.Context) (context.Context, func(), error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, nil, net.ErrClosed
	}
	ctx, cancel := context.WithCancel(ctx)
	c.cancel = cancel
	c.running.Add(1)
	return ctx, func() { cancel(); c.running.Done() }, nil
}

// Close cancels a Run in progress and waits for it to return. It may be
// called any number of times, before, during or after Run.
func (c *Closer) Close() {
	c.mu.Lock()
	c.closed = true
	cancel := c.cancel
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	c.running.Wait()
}

// AfterFunc is context.AfterFunc whose stop waits: once stop returns, f
// has either returned or will never run, so that no goroutine of f
// outlives the caller.
func AfterFunc(ctx context.Context, f func()) (stop func()) {
	var ran sync.WaitGroup
	ran.Add(1)
	cancel := context.AfterFunc(ctx, func() {
		defer ran.Done()
		f()
	})
	return func() {
		if cancel() {
			ran.Done()
		}
		ran.Wait()
	}
}
