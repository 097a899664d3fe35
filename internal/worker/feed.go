package worker

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cardwire/cardwire/internal/encoding"
	"github.com/cardwire/cardwire/internal/store"
)

// errTooManyWaiters reports that the process serves WORKER_API_MAX_WAITERS
// long polls and streams already.
var errTooManyWaiters = errors.New("too many open waits on this worker; retry later")

// feed is a process's one view of what changes in the bucket, so that no
// API request costs a NATS consumer: every record revision, fanned out in
// memory to the requests waiting on that encoding, and the pending index,
// held in memory (its size is the number of pending encodings, not of
// records) for the pending gauge and the pending listing.
type feed struct {
	maxWaiters int

	mu      sync.Mutex
	waiters map[string]map[*waiter]struct{}
	open    int
	pending map[string]pendingKey // encoding id → its place in the order
	all     []pendingKey          // every pending encoding, oldest request first
	byWS    map[string][]pendingKey
	loaded  chan struct{} // closed once the pending index is read
}

// pendingKey orders pending encodings: by request time, then id.
type pendingKey struct {
	at time.Time
	id string
	ws string
}

func (a pendingKey) compare(b pendingKey) int {
	if c := a.at.Compare(b.at); c != 0 {
		return c
	}
	return strings.Compare(a.id, b.id)
}

// waiter receives the latest revision of one encoding.
type waiter struct {
	id string
	ch chan encoding.Record // capacity 1: only the latest matters
}

func newFeed(maxWaiters int) *feed {
	return &feed{maxWaiters: maxWaiters, waiters: map[string]map[*waiter]struct{}{},
		pending: map[string]pendingKey{}, byWS: map[string][]pendingKey{}, loaded: make(chan struct{})}
}

// start follows the records and the pending index until ctx ends. It
// returns once the pending index is read, or when wait ends first.
func (f *feed) start(ctx, wait context.Context, st *store.Store) error {
	records, err := st.WatchRecords(ctx)
	if err != nil {
		return err
	}
	pend, err := st.WatchPending(ctx)
	if err != nil {
		return err
	}
	go func() {
		for rec := range records {
			f.publish(rec)
		}
	}()
	go func() {
		for c := range pend {
			f.applyPending(c)
		}
	}()
	select {
	case <-f.loaded:
		return nil
	case <-wait.Done():
		return fmt.Errorf("read the pending index: %w", wait.Err())
	}
}

// publish hands rec to every request waiting on its encoding.
func (f *feed) publish(rec encoding.Record) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for w := range f.waiters[rec.EncodingID] {
		select {
		case <-w.ch: // drop the older revision it has not read yet
		default:
		}
		w.ch <- rec
	}
}

// subscribe registers a waiter for id, or fails with errTooManyWaiters.
// The caller reads the record after subscribing, so no revision falls
// between its read and the first one the waiter gets.
func (f *feed) subscribe(id string) (*waiter, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.open >= f.maxWaiters {
		return nil, errTooManyWaiters
	}
	w := &waiter{id: id, ch: make(chan encoding.Record, 1)}
	if f.waiters[id] == nil {
		f.waiters[id] = map[*waiter]struct{}{}
	}
	f.waiters[id][w] = struct{}{}
	f.open++
	return w, nil
}

func (f *feed) unsubscribe(w *waiter) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.waiters[w.id][w]; !ok {
		return
	}
	delete(f.waiters[w.id], w)
	if len(f.waiters[w.id]) == 0 {
		delete(f.waiters, w.id)
	}
	f.open--
}

// openWaiters is how many waits are open.
func (f *feed) openWaiters() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.open
}

func (f *feed) applyPending(c store.PendingChange) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c.EncodingID == "" {
		select {
		case <-f.loaded:
		default:
			close(f.loaded)
		}
		return
	}
	if c.Removed {
		f.removeLocked(c.EncodingID)
		return
	}
	if _, ok := f.pending[c.EncodingID]; ok {
		return
	}
	k := pendingKey{at: c.RequestedAt, id: c.EncodingID, ws: c.WorkspaceID}
	f.pending[k.id] = k
	f.all = insertSorted(f.all, k)
	f.byWS[k.ws] = insertSorted(f.byWS[k.ws], k)
}

// forget drops an encoding that a read showed is no longer pending (its
// index key is being removed; this only hastens what the watch will say).
func (f *feed) forget(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removeLocked(id)
}

func (f *feed) removeLocked(id string) {
	k, ok := f.pending[id]
	if !ok {
		return
	}
	delete(f.pending, id)
	f.all = deleteSorted(f.all, k)
	if ws := deleteSorted(f.byWS[k.ws], k); len(ws) > 0 {
		f.byWS[k.ws] = ws
	} else {
		delete(f.byWS, k.ws)
	}
}

func insertSorted(s []pendingKey, k pendingKey) []pendingKey {
	i, _ := slices.BinarySearchFunc(s, k, pendingKey.compare)
	return slices.Insert(s, i, k)
}

func deleteSorted(s []pendingKey, k pendingKey) []pendingKey {
	if i, ok := slices.BinarySearchFunc(s, k, pendingKey.compare); ok {
		return slices.Delete(s, i, i+1)
	}
	return s
}

// pendingCount is the number of pending encodings.
func (f *feed) pendingCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.pending)
}

// pendingPage returns up to limit pending encoding ids of ws (every
// workspace when empty), oldest request first, after cursor, and the
// cursor of the next page ("" on the last). It costs O(log pending +
// limit), whatever the number of records.
func (f *feed) pendingPage(ws, cursor string, limit int) ([]string, string, error) {
	after, err := decodeCursor(cursor)
	if err != nil {
		return nil, "", err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.all
	if ws != "" {
		s = f.byWS[ws]
	}
	i := 0
	if cursor != "" {
		i, _ = slices.BinarySearchFunc(s, after, pendingKey.compare)
		if i < len(s) && s[i].compare(after) == 0 {
			i++
		}
	}
	end := min(i+limit, len(s))
	ids := make([]string, 0, end-i)
	for _, k := range s[i:end] {
		ids = append(ids, k.id)
	}
	next := ""
	if end < len(s) && end > i {
		next = encodeCursor(s[end-1])
	}
	return ids, next, nil
}

// A cursor is opaque to clients: the request time and id of the last
// encoding of a page.
func encodeCursor(k pendingKey) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(k.at.UnixNano(), 10) + ":" + k.id))
}

var errBadCursor = errors.New("cursor is not one this API returned")

func decodeCursor(c string) (pendingKey, error) {
	if c == "" {
		return pendingKey{}, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return pendingKey{}, errBadCursor
	}
	at, id, ok := strings.Cut(string(b), ":")
	n, err := strconv.ParseInt(at, 10, 64)
	if !ok || err != nil || id == "" {
		return pendingKey{}, errBadCursor
	}
	return pendingKey{at: time.Unix(0, n).UTC(), id: id}, nil
}
