package worker

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/cardwire/cardwire/internal/encoding"
	"github.com/cardwire/cardwire/internal/parking"
)

// A long poll with nothing to answer yet is parked (internal/parking):
// its connection is taken from net/http and costs its socket and a
// parked, not two goroutines and their buffers, so that 10,000 waits fit
// in the worker's memory (BenchmarkManyWaitsRSS). The feed hands it each
// revision; a final one, the wait's end, the client sending more, or
// shutdown answer it, and a client that hangs up ends it unanswered.

// park hands the wait of sub to the lot and reports true, or reports
// false when there is no lot (another OS) or it has failed, the request
// is not a GET (a HEAD's answer has no body), or the connection cannot be
// hijacked (HTTP/2), and the handler waits itself. Parked, the wait
// answers and unsubscribes itself; the route's request counter has
// counted it a 200 already.
func (a *api) park(w http.ResponseWriter, r *http.Request, sub *waiter, rec encoding.Record, until time.Time) bool {
	if a.lot == nil || r.Method != http.MethodGet || r.ProtoMajor != 1 || a.waits.Err() != nil {
		return false
	}
	if err := a.lot.Err(); err != nil {
		// The lot ended its spots when it failed; waits go on in their
		// handlers, as on other systems.
		a.lotFailed.Do(func() {
			a.log.Error().Err(err).Msg("long polls are no longer parked; they wait in their handlers from now on")
		})
		return false
	}
	header := w.Header().Clone()
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return false
	}
	p := &parked{api: a, sub: sub, rec: rec, header: header}
	p.spot, err = a.lot.Park(conn, until, p.end)
	if err != nil {
		// Not taken (shutting down, or epoll refused it): the wait ends
		// now, with what there is.
		a.log.Debug().Err(err).Msg("long poll not parked; answered at once")
		p.end(conn, parking.Shutdown)
		_ = conn.Close()
		return true
	}
	a.feed.deliverTo(sub, p.deliver)
	return true
}

// parked is one parked long poll.
type parked struct {
	api    *api
	sub    *waiter
	spot   *parking.Spot
	header http.Header

	mu  sync.Mutex
	rec encoding.Record
}

// deliver keeps a newer revision and, once it is final, has the spot
// answer. The feed calls it under its lock: it does not block.
func (p *parked) deliver(rec encoding.Record) {
	p.mu.Lock()
	if rec.Revision > p.rec.Revision {
		p.rec = rec
	}
	final := p.rec.Status.Terminal()
	p.mu.Unlock()
	if final {
		p.spot.Leave()
	}
}

// end answers the wait with the latest revision, unless the client hung
// up.
func (p *parked) end(conn net.Conn, why parking.Reason) {
	p.api.feed.unsubscribe(p.sub)
	if why == parking.Hangup {
		return
	}
	p.mu.Lock()
	rec := p.rec
	p.mu.Unlock()
	if err := p.api.answer(conn, p.header, rec); err != nil {
		p.api.log.Debug().Err(err).Str("encoding_id", rec.EncodingID).Str("reason", why.String()).Msg("long poll answer not written")
	}
}

// answer writes rec as the 200 of a long poll and says the connection
// closes (net/http no longer serves it).
func (a *api) answer(conn net.Conn, header http.Header, rec encoding.Record) error {
	b, err := jsonBody(rec)
	if err != nil {
		return err
	}
	header.Set("Content-Type", "application/json")
	header.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	resp := &http.Response{StatusCode: http.StatusOK, ProtoMajor: 1, ProtoMinor: 1, Header: header,
		ContentLength: int64(len(b)), Body: io.NopCloser(bytes.NewReader(b)), Close: true}
	if err := conn.SetWriteDeadline(time.Now().Add(a.o.WriteTimeout)); err != nil {
		return err
	}
	return resp.Write(conn)
}
