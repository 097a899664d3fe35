package worker

import (
	"context"
	"encoding/base64"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/btree"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/cardwire/cardwire/internal/encoding"
	"github.com/cardwire/cardwire/internal/store"
	"github.com/cardwire/cardwire/internal/streams"
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
	// recs is the latest revision seen of pending encodings (registered
	// here, revised since start, or read once by a listing): a listing
	// answers from it without a read, because with a million records in
	// the bucket nats-server's tail latency per read doubled
	// (BenchmarkListPending). Memory in the pending encodings. With the
	// bucket's revision (when it came round the feed), a settle's
	// compare-and-set starts from it instead of reading the record.
	recs map[string]store.Revision
	// all and byWS order the pending encodings, oldest request first, in
	// B-trees: an encoding settles anywhere in the order, and a sorted
	// slice moved half of itself on each (it showed as a fifth of the
	// worker's CPU in BenchmarkSettle).
	all  *btree.BTreeG[pendingKey]
	byWS map[string]*btree.BTreeG[pendingKey]
	// loading holds, until the index is read, the encodings seen settle
	// meanwhile, so that the index does not bring them back.
	loading map[string]bool
	// settled are the latest encodings seen final (a bounded ring), so
	// that a registration answered after its record settled does not
	// list it again.
	settled     map[string]bool
	settledRing []string
	settledNext int
}

// settledRemembered bounds the settled ring.
const settledRemembered = 4096

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

func pendingLess(a, b pendingKey) bool { return a.compare(b) < 0 }

// pendingDegree is the B-trees' degree: nodes of up to 63 keys.
const pendingDegree = 32

func newPendingTree() *btree.BTreeG[pendingKey] {
	return btree.NewG(pendingDegree, pendingLess)
}

// waiter receives the latest revision of one encoding.
type waiter struct {
	id string
	ch chan encoding.Record // capacity 1: only the latest matters
	// deliver, when set, is handed each revision instead of ch (a
	// parked long poll has no goroutine reading ch). It must not block.
	deliver func(encoding.Record)
}

func newFeed(maxWaiters int) *feed {
	return &feed{maxWaiters: maxWaiters, waiters: map[string]map[*waiter]struct{}{},
		pending: map[string]pendingKey{}, recs: map[string]store.Revision{}, all: newPendingTree(), byWS: map[string]*btree.BTreeG[pendingKey]{},
		loading: map[string]bool{},
		settled: map[string]bool{}, settledRing: make([]string, settledRemembered)}
}

// registered enters a record this process just registered, so that a
// listing on this replica shows it at once rather than when its revision
// comes round the feed (which then changes nothing).
func (f *feed) registered(rec encoding.Record) {
	if rec.Status.Terminal() {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.settled[rec.EncodingID] {
		f.addLocked(pendingKey{at: rec.RequestedAt, id: rec.EncodingID, ws: rec.WorkspaceID})
		f.keepLocked(store.Revision{Record: rec})
	}
}

// keepLocked keeps r as its pending encoding's latest revision, unless a
// later one is kept already (or the same one with its bucket revision) or
// it is not pending.
func (f *feed) keepLocked(r store.Revision) {
	rec := r.Record
	if _, ok := f.pending[rec.EncodingID]; !ok || rec.Status.Terminal() {
		return
	}
	kept, ok := f.recs[rec.EncodingID]
	if !ok || kept.Record.Revision < rec.Revision || (kept.Record.Revision == rec.Revision && kept.KV == 0) {
		f.recs[rec.EncodingID] = r
	}
}

// keep is keepLocked for a record a listing read.
func (f *feed) keep(rec encoding.Record) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keepLocked(store.Revision{Record: rec})
}

// latest is the latest revision kept of encoding id, if any: where a
// settle's compare-and-set starts (a stale one costs it a read).
func (f *feed) latest(id string) store.Revision {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.recs[id]
}

// kept returns the latest revision kept of each of ids, and the ids it
// has none of.
func (f *feed) kept(ids []string) ([]encoding.Record, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	recs := make([]encoding.Record, len(ids))
	var missing []string
	for i, id := range ids {
		r, ok := f.recs[id]
		if !ok {
			missing = append(missing, id)
			continue
		}
		recs[i] = r.Record
	}
	return recs, missing
}

// start follows the record revisions until ctx ends and reads the
// pending index once (after moving what version 0.6.0 left in the records'
// bucket); it returns when the index is read, or when wait ends first.
// Membership in the pending set comes from the index at start-up and from
// the revisions afterwards (a pending revision adds, a final one removes),
// so the index is read once and never watched.
func (f *feed) start(ctx, wait context.Context, st *store.Store, log zerolog.Logger) error {
	records, err := st.WatchRecords(ctx)
	if err != nil {
		return err
	}
	go func() {
		for r := range records {
			f.publish(r)
		}
	}()
	// A stream just created on a cluster may have no leader for a moment
	// (no responders): the read is tried again until wait ends.
	for delay := 50 * time.Millisecond; ; delay = min(2*delay, 2*time.Second) {
		moved, err := st.MigrateLegacyPending(wait)
		if moved > 0 {
			log.Info().Int("entries", moved).Str("from", streams.EncodingsBucket).Str("to", streams.PendingBucket).
				Msg("pending index of version 0.6.0 moved")
		}
		var entries []store.Pending
		if err == nil {
			entries, err = st.PendingIndex(wait)
		}
		if err == nil {
			f.load(entries)
			return nil
		}
		if !errors.Is(err, nats.ErrNoResponders) && !errors.Is(err, jetstream.ErrNoStreamResponse) && !errors.Is(err, nats.ErrTimeout) {
			return err
		}
		select {
		case <-wait.Done():
			return err
		case <-time.After(delay):
		}
	}
}

// sweep forgets pending entries older than maxAge, checking each against
// its record: every encoding is final by then, so an entry that old is one
// whose index removal was lost before this process started (a revision it
// saw would have removed it).
func (f *feed) sweep(ctx context.Context, st *store.Store, maxAge time.Duration, now func() time.Time, log zerolog.Logger) {
	f.mu.Lock()
	var old []pendingKey
	f.all.Ascend(func(k pendingKey) bool {
		if now().Sub(k.at) < maxAge {
			return false // in request-time order: the rest are younger
		}
		old = append(old, k)
		return true
	})
	f.mu.Unlock()
	for _, k := range old {
		rec, err := st.Get(ctx, k.id)
		if err == nil && !rec.Status.Terminal() {
			continue
		}
		if err != nil && !errors.Is(err, encoding.ErrNotFound) {
			return // the store is unavailable: next time
		}
		f.forget(k.id)
		if err := st.RemovePending(ctx, store.Pending{WorkspaceID: k.ws, RequestedAt: k.at, EncodingID: k.id}); err != nil {
			log.Warn().Err(err).Str("encoding_id", k.id).Msg("stale pending index entry not removed")
		}
	}
}

// publish hands a revision to every request waiting on its encoding and
// keeps the pending set.
func (f *feed) publish(r store.Revision) {
	rec := r.Record
	f.mu.Lock()
	defer f.mu.Unlock()
	if rec.Status.Terminal() {
		f.settleLocked(rec.EncodingID)
	} else {
		// A first revision that comes round after this process settled
		// the encoding (settledHere) does not bring it back.
		if rec.Revision == 1 && !f.settled[rec.EncodingID] {
			f.addLocked(pendingKey{at: rec.RequestedAt, id: rec.EncodingID, ws: rec.WorkspaceID})
		}
		f.keepLocked(r)
	}
	for w := range f.waiters[rec.EncodingID] {
		if w.deliver != nil {
			w.deliver(rec)
			continue
		}
		select {
		case <-w.ch: // drop the older revision it has not read yet
		default:
		}
		w.ch <- rec
	}
}

// deliverTo hands w's revisions to deliver from now on, first the one
// waiting in its channel, if any.
func (f *feed) deliverTo(w *waiter, deliver func(encoding.Record)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w.deliver = deliver
	select {
	case rec := <-w.ch:
		deliver(rec)
	default:
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

// load adds the entries of the pending index, but for those the feed has
// already seen settle.
func (f *feed) load(entries []store.Pending) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range entries {
		if !f.loading[p.EncodingID] {
			f.addLocked(pendingKey{at: p.RequestedAt, id: p.EncodingID, ws: p.WorkspaceID})
		}
	}
	f.loading = nil
}

func (f *feed) addLocked(k pendingKey) {
	if _, ok := f.pending[k.id]; ok {
		return
	}
	f.pending[k.id] = k
	f.all.ReplaceOrInsert(k)
	ws := f.byWS[k.ws]
	if ws == nil {
		ws = newPendingTree()
		f.byWS[k.ws] = ws
	}
	ws.ReplaceOrInsert(k)
}

// settledHere drops an encoding this process settled, before its final
// revision comes round the feed: its next listing no longer has it.
func (f *feed) settledHere(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.settleLocked(id)
}

// settleLocked drops a final encoding and remembers it, so that neither
// a late first revision, a registration answered late, nor the index
// still being read brings it back.
func (f *feed) settleLocked(id string) {
	f.removeLocked(id)
	if !f.settled[id] {
		delete(f.settled, f.settledRing[f.settledNext])
		f.settledRing[f.settledNext] = id
		f.settledNext = (f.settledNext + 1) % len(f.settledRing)
		f.settled[id] = true
	}
	if f.loading != nil {
		f.loading[id] = true // the index may still list it
	}
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
	delete(f.recs, id)
	f.all.Delete(k)
	if ws := f.byWS[k.ws]; ws != nil {
		if ws.Delete(k); ws.Len() == 0 {
			delete(f.byWS, k.ws)
		}
	}
}

// pendingCount is the number of pending encodings.
func (f *feed) pendingCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.pending)
}

// pendingPage returns up to limit pending encoding ids of the workspaces
// wss (every workspace when nil), oldest request first, after cursor, and
// the cursor of the next page ("" on the last). It costs O(log pending +
// limit) per workspace listed, whatever the number of records.
func (f *feed) pendingPage(wss []string, cursor string, limit int) ([]string, string, error) {
	after, err := decodeCursor(cursor)
	if err != nil {
		return nil, "", err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var page []pendingKey
	more := false
	if wss == nil {
		page, more = pageOf(f.all, after, cursor != "", limit)
	} else {
		// Each workspace's next limit entries, merged: the page is the
		// first limit of them all.
		for _, ws := range wss {
			p, m := pageOf(f.byWS[ws], after, cursor != "", limit)
			page, more = append(page, p...), more || m
		}
		if len(wss) > 1 {
			slices.SortFunc(page, pendingKey.compare)
			if len(page) > limit {
				page, more = page[:limit], true
			}
		}
	}
	ids := make([]string, 0, len(page))
	for _, k := range page {
		ids = append(ids, k.id)
	}
	next := ""
	if more && len(page) > 0 {
		next = encodeCursor(page[len(page)-1])
	}
	return ids, next, nil
}

// pageOf returns up to limit entries of t after after (from the start
// unless started), and whether more follow.
func pageOf(t *btree.BTreeG[pendingKey], after pendingKey, started bool, limit int) ([]pendingKey, bool) {
	if t == nil {
		return nil, false
	}
	page := make([]pendingKey, 0, min(limit, t.Len()))
	more := false
	visit := func(k pendingKey) bool {
		if started && k.compare(after) == 0 {
			return true // the cursor's own entry, still pending
		}
		if len(page) == limit {
			more = true
			return false
		}
		page = append(page, k)
		return true
	}
	if started {
		t.AscendGreaterOrEqual(after, visit)
	} else {
		t.Ascend(visit)
	}
	return page, more
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
