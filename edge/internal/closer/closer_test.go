package closer_test

import (
	"context"
	"net"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/anyedge/anyedge/edge/internal/closer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestCloseEndsRunAndWaits(t *testing.T) {
	var c closer.Closer
	ctx, done, err := c.Start(context.Background())
	require.NoError(t, err)
	returned := make(chan struct{})
	go func() {
		<-ctx.Done()
		close(returned)
		done()
	}()
	c.Close()
	select {
	case <-returned:
	default:
		t.Fatal("Close returned before Run")
	}
	c.Close()
	_, _, err = c.Start(context.Background())
	require.ErrorIs(t, err, net.ErrClosed)
}

func TestCloseBeforeStart(t *testing.T) {
	var c closer.Closer
	c.Close()
	_, _, err := c.Start(context.Background())
	require.ErrorIs(t, err, net.ErrClosed)
}

func TestAfterFuncStopWaits(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	release := make(chan struct{})
	finished := false
	stop := closer.AfterFunc(ctx, func() { <-release; finished = true })
	cancel()
	go close(release)
	stop()
	require.True(t, finished, "stop returned while f ran")

	ran := false
	stop = closer.AfterFunc(context.Background(), func() { ran = true })
	stop()
	require.False(t, ran)
}
