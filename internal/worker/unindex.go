package worker

import (
	"context"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/cardwire/cardwire/internal/store"
)

// unindexer takes settled encodings out of the pending index off the
// settling path: the removal is a publish (a round trip the event or
// request need not wait for), and one that is lost (a crash, a
// full queue under a burst) is repaired at the deadline, which every
// encoding reaches. The in-memory pending set does not wait for it either:
// it drops an encoding on its final revision.
type unindexer struct {
	store *store.Store
	log   zerolog.Logger
	queue chan store.Pending
	wg    sync.WaitGroup
	// mu guards closed: after stop a removal is done in line.
	mu     sync.RWMutex
	closed bool
}

// unindexQueue bounds the removals waiting; beyond it a removal is done
// in line.
const unindexQueue = 4096

// unindexWorkers is how many removals are in flight at once: each is a
// round trip, and one at a time (about a millisecond each under load)
// fell behind the settles, filled the queue and put the round trip back
// on the settling path (BenchmarkSettle's goroutine dump).
const unindexWorkers = 16

func newUnindexer(st *store.Store, log zerolog.Logger) *unindexer {
	u := &unindexer{store: st, log: log, queue: make(chan store.Pending, unindexQueue)}
	for range unindexWorkers {
		u.wg.Go(func() {
			for item := range u.queue {
				u.do(item)
			}
		})
	}
	return u
}

func (u *unindexer) remove(p store.Pending) {
	u.mu.RLock()
	defer u.mu.RUnlock()
	if !u.closed {
		select {
		case u.queue <- p:
			return
		default:
		}
	}
	u.do(p)
}

func (u *unindexer) do(p store.Pending) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := u.store.RemovePending(ctx, p); err != nil {
		u.log.Warn().Err(err).Str("encoding_id", p.EncodingID).Msg("pending index not updated; the deadline will")
	}
}

// stop removes what is queued, or gives up when ctx ends (the deadlines
// repair the rest).
func (u *unindexer) stop(ctx context.Context) {
	u.mu.Lock()
	if !u.closed {
		u.closed = true
		close(u.queue)
	}
	u.mu.Unlock()
	done := make(chan struct{})
	go func() { u.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}
