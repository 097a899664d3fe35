package parking_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/parking"
)

// parkServer is an HTTP server whose handler parks every request in lot
// for wait; each spot's end answers "ended: <reason>" and reports the
// reason on ended.
type parkServer struct {
	lot    *parking.Lot
	srv    *httptest.Server
	parked chan *parking.Spot
	ended  chan parking.Reason
}

func newParkServer(t *testing.T, wait time.Duration) *parkServer {
	t.Helper()
	lot, err := parking.New()
	require.NoError(t, err)
	t.Cleanup(func() { _ = lot.Close(context.Background()) })
	p := &parkServer{lot: lot, parked: make(chan *parking.Spot, 1000), ended: make(chan parking.Reason, 1000)}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		spot, err := lot.Park(conn, time.Now().Add(wait), func(conn net.Conn, why parking.Reason) {
			if why != parking.Hangup {
				body := "ended: " + why.String()
				_, _ = fmt.Fprintf(conn, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
			}
			p.ended <- why
		})
		if err != nil {
			t.Errorf("park: %v", err)
			_ = conn.Close()
			return
		}
		p.parked <- spot
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// dial sends a GET on a connection of its own and returns it unread.
func (p *parkServer) dial(t *testing.T) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", p.srv.Listener.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	_, err = io.WriteString(conn, "GET /wait HTTP/1.1\r\nHost: cardwire\r\n\r\n")
	require.NoError(t, err)
	return conn
}

// awaitEnd awaits the next spot's end.
func (p *parkServer) awaitEnd(t *testing.T) parking.Reason {
	t.Helper()
	select {
	case why := <-p.ended:
		return why
	case <-time.After(10 * time.Second):
		t.Fatal("no spot ended within 10s")
		return 0
	}
}

func readAnswer(t *testing.T, conn net.Conn) string {
	t.Helper()
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.True(t, resp.Close, "the connection closes after the answer")
	return string(body)
}

func TestSpotEnds(t *testing.T) {
	cases := []struct {
		name string
		wait time.Duration
		// do ends the spot from outside, if the deadline does not.
		do   func(t *testing.T, p *parkServer, spot *parking.Spot, conn net.Conn)
		want parking.Reason
	}{
		{name: "deadline", wait: 50 * time.Millisecond, want: parking.Deadline},
		{name: "left", wait: time.Minute, want: parking.Left,
			do: func(t *testing.T, p *parkServer, spot *parking.Spot, conn net.Conn) { spot.Leave() }},
		{name: "the client sends more", wait: time.Minute, want: parking.Input,
			do: func(t *testing.T, p *parkServer, spot *parking.Spot, conn net.Conn) {
				_, err := io.WriteString(conn, "GET /next HTTP/1.1\r\nHost: cardwire\r\n\r\n")
				require.NoError(t, err)
			}},
		{name: "shutdown", wait: time.Minute, want: parking.Shutdown,
			do: func(t *testing.T, p *parkServer, spot *parking.Spot, conn net.Conn) { p.lot.Shutdown() }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newParkServer(t, tc.wait)
			conn := p.dial(t)
			spot := <-p.parked
			if tc.do != nil {
				tc.do(t, p, spot, conn)
			}
			require.Equal(t, "ended: "+tc.want.String(), readAnswer(t, conn))
			require.Equal(t, tc.want, p.awaitEnd(t))
			require.Zero(t, p.lot.Len())
			spot.Leave() // ended already: nothing happens
			select {
			case why := <-p.ended:
				t.Fatalf("ended twice: %s", why)
			case <-time.After(50 * time.Millisecond):
			}
		})
	}
}

func TestSpotEndsWhenTheClientHangsUp(t *testing.T) {
	p := newParkServer(t, time.Minute)
	conn := p.dial(t)
	<-p.parked
	require.NoError(t, conn.Close())
	require.Equal(t, parking.Hangup, p.awaitEnd(t))
	require.Zero(t, p.lot.Len())
}

// Parked connections cost no goroutine each; Close answers every one and
// returns once their ends have.
func TestParkedConnectionsHoldNoGoroutine(t *testing.T) {
	const n = 500
	p := newParkServer(t, time.Minute)
	base := runtime.NumGoroutine()
	conns := make([]net.Conn, n)
	for i := range conns {
		conns[i] = p.dial(t)
		<-p.parked
	}
	require.Equal(t, n, p.lot.Len())
	// The handlers' goroutines end once they have parked.
	require.Eventually(t, func() bool { return runtime.NumGoroutine() < base+n/10 }, 10*time.Second, 10*time.Millisecond,
		"goroutines: %d, %d before", runtime.NumGoroutine(), base)

	require.NoError(t, p.lot.Close(context.Background()))
	require.Zero(t, p.lot.Len())
	require.Len(t, p.ended, n, "every end has returned when Close does")
	for _, conn := range conns {
		require.Equal(t, "ended: shutdown", readAnswer(t, conn))
	}
	_, err := p.lot.Park(conns[0], time.Now().Add(time.Minute), func(net.Conn, parking.Reason) {})
	require.ErrorIs(t, err, parking.ErrClosed)
}

func TestCloseIsBoundByItsContext(t *testing.T) {
	lot, err := parking.New()
	require.NoError(t, err)
	release := make(chan struct{})
	ending := make(chan struct{})
	parked := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		if _, err := lot.Park(conn, time.Now().Add(time.Minute), func(net.Conn, parking.Reason) {
			close(ending)
			<-release
		}); err != nil {
			t.Errorf("park: %v", err)
		}
		close(parked)
	}))
	defer srv.Close()
	resp := make(chan error, 1)
	go func() {
		r, err := http.Get(srv.URL)
		if err == nil {
			r.Body.Close()
		}
		resp <- err
	}()
	<-parked
	require.Equal(t, 1, lot.Len())

	ctx, cancel := context.WithCancel(context.Background())
	closed := make(chan error, 1)
	go func() { closed <- lot.Close(ctx) }()
	<-ending
	cancel()
	require.ErrorIs(t, <-closed, context.Canceled)
	close(release)
	require.Error(t, <-resp, "the end wrote nothing: the client sees the connection close")
	require.NoError(t, lot.Close(context.Background()), "once the end has returned")
}
