package parking

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Reason says why a spot ended.
type Reason int

const (
	// Deadline: the spot's time ran out.
	Deadline Reason = iota
	// Left: Spot.Leave was called (the answer is ready).
	Left
	// Input: the client sent more than its request; it gets its answer
	// now, and the connection closes.
	Input
	// Hangup: the client closed the connection; there is nobody to
	// answer.
	Hangup
	// Shutdown: the lot is closing.
	Shutdown
)

func (r Reason) String() string {
	switch r {
	case Deadline:
		return "deadline"
	case Left:
		return "left"
	case Input:
		return "input"
	case Hangup:
		return "hangup"
	case Shutdown:
		return "shutdown"
	}
	return "unknown"
}

// ErrClosed reports a Park on a lot that is shutting down.
var ErrClosed = errors.New("parking: the lot is closed")

// EndFunc ends a spot: it writes the answer to conn (unless the reason is
// Hangup) and need not close it; the lot closes conn when it returns. It
// runs on a goroutine of its own, once per spot.
type EndFunc func(conn net.Conn, why Reason)

// Lot holds parked connections. Its zero value is not usable; see New.
type Lot struct {
	poller poller

	mu     sync.Mutex
	spots  map[uint64]*Spot
	next   uint64
	closed bool
	// failed is why the watch stopped before Close (nil while it runs).
	failed error
	ending sync.WaitGroup
}

// Spot is one parked connection.
type Spot struct {
	lot   *Lot
	id    uint64
	conn  net.Conn
	end   EndFunc
	timer *time.Timer
}

// poller watches parked sockets for input or a hangup.
type poller interface {
	add(conn net.Conn, id uint64) error
	remove(conn net.Conn) error
	// run reports the ids whose socket has input or hung up (hangup
	// true), until close or a failure; it returns why it stopped.
	run(report func(id uint64, hangup bool)) error
	close() error
}

// New returns a lot and starts watching; Close stops it. It returns
// errors.ErrUnsupported where parking is not built.
func New() (*Lot, error) {
	p, err := newPoller()
	if err != nil {
		return nil, err
	}
	l := &Lot{poller: p, spots: map[uint64]*Spot{}}
	go l.watch()
	return l, nil
}

// ErrWatchStopped is the error of a lot whose watch of the parked sockets
// stopped on its own (Err, and Park): it no longer parks, and the spots it
// held were ended (reason Shutdown) when it stopped.
var ErrWatchStopped = errors.New("parking: the watch of parked connections stopped")

// watch runs the poller until Close; should it stop before, nothing
// would see a client hang up or send more, so the lot fails: every spot
// ends now and Park refuses.
func (l *Lot) watch() {
	err := l.poller.run(l.report)
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.failed = fmt.Errorf("%w: %w", ErrWatchStopped, err)
	l.mu.Unlock()
	l.Shutdown()
}

// Err is nil while the lot parks, and wraps ErrWatchStopped (with the
// cause) once its watch has failed.
func (l *Lot) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failed
}

// Park holds conn, hijacked from net/http, until until, the client hangs
// up or sends more, Spot.Leave or Shutdown; then end is called once. On
// an error the lot has not taken conn: the caller still answers and
// closes it.
func (l *Lot) Park(conn net.Conn, until time.Time, end EndFunc) (*Spot, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failed != nil {
		return nil, l.failed
	}
	if l.closed {
		return nil, ErrClosed
	}
	l.next++
	s := &Spot{lot: l, id: l.next, conn: conn, end: end}
	if err := l.poller.add(conn, s.id); err != nil {
		return nil, err
	}
	l.spots[s.id] = s
	s.timer = time.AfterFunc(time.Until(until), func() { l.finish(s.id, Deadline) })
	return s, nil
}

// Leave ends the spot now (reason Left) unless it has ended already; its
// end runs on a goroutine of its own, so Leave never blocks.
func (s *Spot) Leave() { go s.lot.finish(s.id, Left) }

// Len is the number of parked connections.
func (l *Lot) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.spots)
}

func (l *Lot) report(id uint64, hangup bool) {
	why := Input
	if hangup {
		why = Hangup
	}
	go l.finish(id, why)
}

// finish ends spot id, if it is still parked.
func (l *Lot) finish(id uint64, why Reason) {
	l.mu.Lock()
	s, ok := l.spots[id]
	if ok {
		delete(l.spots, id)
		l.ending.Add(1)
	}
	l.mu.Unlock()
	if ok {
		l.endSpot(s, why)
	}
}

// endSpot ends a spot taken out of spots: out of the poller, end, then
// the connection closed.
func (l *Lot) endSpot(s *Spot, why Reason) {
	defer l.ending.Done()
	s.timer.Stop()
	_ = l.poller.remove(s.conn)
	s.end(s.conn, why)
	if why == Input {
		linger(s.conn)
	}
	_ = s.conn.Close()
}

// linger shuts the write side and reads what the client sent, for a
// moment, before the close: a socket closed with unread input is reset,
// and a reset can reach the client before it reads its answer (net/http
// does the same before closing such a connection).
func linger(conn net.Conn) {
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = conn.SetReadDeadline(time.Now().Add(lingerFor))
	_, _ = io.Copy(io.Discard, io.LimitReader(conn, 256<<10))
}

// lingerFor bounds linger.
const lingerFor = 500 * time.Millisecond

// Shutdown ends every spot (reason Shutdown) and refuses new ones; it
// does not wait for their ends (Close does).
func (l *Lot) Shutdown() {
	l.mu.Lock()
	l.closed = true
	ending := make([]*Spot, 0, len(l.spots))
	for id, s := range l.spots {
		delete(l.spots, id)
		ending = append(ending, s)
	}
	l.ending.Add(len(ending))
	l.mu.Unlock()
	for _, s := range ending {
		go l.endSpot(s, Shutdown)
	}
}

// Close shuts the lot down, waits within ctx for every spot's end to
// return, then stops watching.
func (l *Lot) Close(ctx context.Context) error {
	l.Shutdown()
	done := make(chan struct{})
	go func() {
		l.ending.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return errors.Join(ctx.Err(), l.poller.close())
	}
	return l.poller.close()
}
