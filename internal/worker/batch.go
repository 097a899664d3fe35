package worker

import (
	"context"
	"sync"
	"time"

	"github.com/cardwire/cardwire/internal/seam"
)

// attemptLister is the Seam call the batcher makes.
type attemptLister interface {
	GetActionAttempt(ctx context.Context, id string) (seam.ActionAttempt, error)
	ListActionAttempts(ctx context.Context, ids []string) ([]seam.ActionAttempt, error)
}

// attemptBatcher coalesces the action-attempt reads of deadlines that fall
// due together (after a webhook outage, thousands at once) into one
// /action_attempts/list per batch instead of one /action_attempts/get
// each. A read waits at most window for others to join it; a read alone
// is a plain get.
type attemptBatcher struct {
	seam   attemptLister
	window time.Duration
	max    int

	mu    sync.Mutex
	batch map[string][]chan attemptResult
	timer *time.Timer
}

type attemptResult struct {
	attempt seam.ActionAttempt
	err     error
}

// batchTimeout bounds one list call, whoever is waiting on it.
const batchTimeout = 15 * time.Second

func newAttemptBatcher(s attemptLister, window time.Duration, maxIDs int) *attemptBatcher {
	return &attemptBatcher{seam: s, window: window, max: maxIDs, batch: map[string][]chan attemptResult{}}
}

// Get reads one action attempt, in a batch with the reads that come within
// the window.
func (b *attemptBatcher) Get(ctx context.Context, id string) (seam.ActionAttempt, error) {
	ch := make(chan attemptResult, 1)
	b.mu.Lock()
	b.batch[id] = append(b.batch[id], ch)
	switch {
	case len(b.batch) >= b.max:
		b.flushLocked()
	case b.timer == nil:
		b.timer = time.AfterFunc(b.window, b.flush)
	}
	b.mu.Unlock()
	select {
	case r := <-ch:
		return r.attempt, r.err
	case <-ctx.Done():
		return seam.ActionAttempt{}, ctx.Err()
	}
}

func (b *attemptBatcher) flush() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
}

func (b *attemptBatcher) flushLocked() {
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
	if len(b.batch) == 0 {
		return
	}
	batch := b.batch
	b.batch = map[string][]chan attemptResult{}
	go b.run(batch)
}

func (b *attemptBatcher) run(batch map[string][]chan attemptResult) {
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	defer cancel()
	answer := func(id string, r attemptResult) {
		for _, ch := range batch[id] {
			ch <- r
		}
	}
	if len(batch) == 1 {
		for id := range batch {
			at, err := b.seam.GetActionAttempt(ctx, id)
			answer(id, attemptResult{at, err})
		}
		return
	}
	ids := make([]string, 0, len(batch))
	for id := range batch {
		ids = append(ids, id)
	}
	list, err := b.seam.ListActionAttempts(ctx, ids)
	if err != nil {
		for _, id := range ids {
			answer(id, attemptResult{err: err})
		}
		return
	}
	found := make(map[string]seam.ActionAttempt, len(list))
	for _, at := range list {
		found[at.ActionAttemptID] = at
	}
	for _, id := range ids {
		if at, ok := found[id]; ok {
			answer(id, attemptResult{attempt: at})
			continue
		}
		// Not in the list: asked on its own, so Seam's own answer (a 404,
		// say) decides, not the absence.
		at, err := b.seam.GetActionAttempt(ctx, id)
		answer(id, attemptResult{at, err})
	}
}
