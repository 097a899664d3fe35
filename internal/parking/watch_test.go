package parking

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// failingPoller stands in for epoll where a real one cannot be made to
// fail: its run stops with cause once fail is closed.
type failingPoller struct {
	fail  chan struct{}
	cause error
}

func (p *failingPoller) add(net.Conn, uint64) error { return nil }
func (p *failingPoller) remove(net.Conn) error      { return nil }
func (p *failingPoller) close() error               { return nil }
func (p *failingPoller) run(func(uint64, bool)) error {
	<-p.fail
	return p.cause
}

// A watch that stops on its own ends every spot at once and fails the
// lot, so that no wait is left without hangup detection and callers can
// wait another way.
func TestWatchStoppedFailsTheLot(t *testing.T) {
	cause := errors.New("epoll_wait: bad file descriptor")
	p := &failingPoller{fail: make(chan struct{}), cause: cause}
	l := &Lot{poller: p, spots: map[uint64]*Spot{}}
	go l.watch()

	conn, peer := net.Pipe()
	defer func() { _ = peer.Close() }()
	ended := make(chan Reason, 1)
	_, err := l.Park(conn, time.Now().Add(time.Hour), func(_ net.Conn, why Reason) { ended <- why })
	require.NoError(t, err)
	require.NoError(t, l.Err())

	close(p.fail)
	select {
	case why := <-ended:
		require.Equal(t, Shutdown, why)
	case <-time.After(10 * time.Second):
		t.Fatal("the spot did not end when the watch stopped")
	}
	require.ErrorIs(t, l.Err(), ErrWatchStopped)
	require.ErrorIs(t, l.Err(), cause)
	_, err = l.Park(peer, time.Now().Add(time.Hour), func(net.Conn, Reason) {})
	require.ErrorIs(t, err, ErrWatchStopped)
	require.NoError(t, l.Close(context.Background()))
}

// Close is not a failure.
func TestCloseIsNotAFailure(t *testing.T) {
	p := &failingPoller{fail: make(chan struct{}), cause: errors.New("closed")}
	l := &Lot{poller: p, spots: map[uint64]*Spot{}}
	stopped := make(chan struct{})
	go func() { l.watch(); close(stopped) }()
	require.NoError(t, l.Close(context.Background()))
	close(p.fail) // the poller's run returns once closed, as epoll's does
	<-stopped
	require.NoError(t, l.Err())
}
