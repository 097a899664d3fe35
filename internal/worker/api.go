package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/cardwire/cardwire/internal/encoding"
	"github.com/cardwire/cardwire/internal/httpapi"
	"github.com/cardwire/cardwire/internal/parking"
	"github.com/cardwire/cardwire/internal/streams"
	"github.com/cardwire/cardwire/internal/workspaces"
)

// APIOptions configure the /v1/encodings API.
type APIOptions struct {
	// Token, when set, is required as "Authorization: Bearer <token>"
	// (WORKER_API_TOKEN). With Options.Workspaces the tokens are in
	// WORKSPACES_FILE instead, each reaching its workspaces.
	Token string
	// MaxWait bounds ?wait= on GET.
	MaxWait time.Duration
	// MaxStream bounds one Server-Sent Events stream.
	MaxStream time.Duration
	// RegisterTimeout bounds the steps of one registration, which do not
	// end when the caller hangs up (nor at shutdown): a step cut off
	// half-way would only be finished by a replay or the deadline.
	RegisterTimeout time.Duration
	// MaxWaiters bounds the long polls and event streams open at once
	// (WORKER_API_MAX_WAITERS); beyond it, 429.
	MaxWaiters int
	// StreamPing is how often an idle event stream gets a comment line.
	StreamPing time.Duration
	// WriteTimeout bounds writing one answer (and one event of a stream).
	WriteTimeout time.Duration
	// MaxInFlight bounds the requests served at once, long polls and
	// streams aside (WORKER_API_MAX_IN_FLIGHT); beyond it, 429.
	MaxInFlight int
}

// DefaultAPIOptions returns the documented defaults.
func DefaultAPIOptions() APIOptions {
	return APIOptions{MaxWait: time.Minute, MaxStream: 15 * time.Minute, RegisterTimeout: 20 * time.Second,
		MaxWaiters: 10000, StreamPing: 15 * time.Second, WriteTimeout: 10 * time.Second, MaxInFlight: 256}
}

// Validate reports the first option that cannot work.
func (o APIOptions) Validate() error {
	if o.MaxWait <= 0 || o.MaxStream <= 0 || o.RegisterTimeout <= 0 || o.StreamPing <= 0 || o.WriteTimeout <= 0 {
		return errors.New("APIOptions.MaxWait, MaxStream, RegisterTimeout, StreamPing and WriteTimeout must be positive")
	}
	if o.MaxWaiters < 1 || o.MaxInFlight < 1 {
		return errors.New("APIOptions.MaxWaiters and MaxInFlight must be positive")
	}
	return nil
}

// API paths.
const (
	encodingsPath = "/v1/encodings"
	maxBodyBytes  = 64 << 10
	maxListLimit  = 500
)

// routes returns every route of the worker API. Middleware, outermost
// first: recover → in-flight gauge → per-route metrics (so 401s and 429s
// are counted by route) → auth → limits (the in-flight bound and a write
// deadline; long polls and streams have their own bound, MaxWaiters, and
// set their deadline per write) → handler.
func (w *Worker) routes() http.Handler {
	dir := w.o.Workspaces
	if dir == nil {
		dir = workspaces.Static(workspaces.Single(workspaces.SingleOptions{WorkspaceID: w.o.Limits.DefaultWorkspaceID, APIToken: w.o.API.Token}))
	}
	a := &api{o: w.o.API, svc: w.svc, feed: w.feed, js: w.o.JS, log: w.log.With().Str("component", "api").Logger(), waits: w.waits,
		slots: make(chan struct{}, w.o.API.MaxInFlight), dir: dir, lot: w.lot}
	mux := http.NewServeMux()
	route := func(pattern, name string, h http.Handler) {
		mux.Handle(pattern, promhttp.InstrumentHandlerCounter(
			a.svc.metrics.api.MustCurryWith(prometheus.Labels{"route": name}), a.auth(h)))
	}
	route("POST "+encodingsPath, "register", a.bounded(a.register))
	route("GET "+encodingsPath, "list", a.bounded(a.list))
	route("GET "+encodingsPath+"/{id}", "get", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("wait") != "" {
			a.get(w, r) // a long poll: bounded by MaxWaiters
			return
		}
		a.bounded(a.get).ServeHTTP(w, r)
	}))
	route("DELETE "+encodingsPath+"/{id}", "cancel", a.bounded(a.cancel))
	route("GET "+encodingsPath+"/{id}/events", "events", http.HandlerFunc(a.events))
	route(encodingsPath, "other", httpapi.MethodNotAllowed("GET, POST"))
	route(encodingsPath+"/{id}", "other", httpapi.MethodNotAllowed("GET, DELETE"))
	route(encodingsPath+"/{id}/events", "other", httpapi.MethodNotAllowed("GET"))
	route("/", "other", http.HandlerFunc(httpapi.NotFound))
	return httpapi.Recoverer(a.log, promhttp.InstrumentHandlerInFlight(a.svc.metrics.apiInFlight, mux))
}

// bounded admits a request only while fewer than MaxInFlight are being
// served (429 otherwise: a slow or hostile client cannot pile up
// goroutines) and bounds the time to write its answer.
func (a *api) bounded(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case a.slots <- struct{}{}:
			defer func() { <-a.slots }()
		default:
			a.svc.metrics.apiRefused.Inc()
			w.Header().Set("Retry-After", "1")
			a.fail(w, r, &httpapi.Error{Status: http.StatusTooManyRequests, Type: "too_many_requests",
				Message: "the worker is serving as many API requests as it may; retry later"})
			return
		}
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(a.o.WriteTimeout + a.o.RegisterTimeout))
		h(w, r)
	})
}

type api struct {
	o    APIOptions
	svc  *service
	feed *feed
	js   jetstream.JetStream
	log  zerolog.Logger
	// waits ends when the worker stops: long polls and event streams end
	// with it, while registrations and cancels finish.
	waits context.Context
	// slots bounds the requests being served, waits aside.
	slots chan struct{}
	// lot holds the parked long polls (park.go); nil where parking is
	// not supported.
	lot *parking.Lot
	// lotFailed logs, once, that the lot has failed.
	lotFailed sync.Once
	// dir holds the API tokens and the workspaces they reach.
	dir directory
}

// waitContext is r's context, also ended at shutdown, bounded by d.
func (a *api) waitContext(r *http.Request, d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(r.Context(), d)
	stop := context.AfterFunc(a.waits, cancel)
	return ctx, func() { stop(); cancel() }
}

// auth admits a request whose bearer token is configured and hands the
// workspaces it reaches (with the configuration it was checked against)
// to the route.
func (a *api) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cfg := a.dir.Current()
		token, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		scope, ok := cfg.Authorize(token)
		if !ok {
			a.svc.metrics.apiUnauthorized.Inc()
			a.log.Warn().Str("method", r.Method).Str("path", r.URL.Path).Str("remote", r.RemoteAddr).
				Bool("had_token", r.Header.Get("Authorization") != "").Msg("API request without a valid token refused")
			w.Header().Set("WWW-Authenticate", `Bearer realm="cardwire"`)
			httpapi.WriteError(w, &httpapi.Error{Status: http.StatusUnauthorized, Type: "unauthorized",
				Message: "a valid Authorization: Bearer token is required"})
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), accessKey{}, access{cfg: cfg, scope: scope})))
	})
}

func (a *api) register(w http.ResponseWriter, r *http.Request) {
	var req encoding.RegisterRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		a.fail(w, r, &httpapi.Error{Status: http.StatusBadRequest, Type: "invalid_input", Message: "the body must be a JSON object: " + err.Error()})
		return
	}
	acc := accessOf(r)
	ws, herr := acc.workspaceFor(req.WorkspaceID)
	if herr != nil {
		a.fail(w, r, herr)
		return
	}
	req.WorkspaceID = ws
	key := r.Header.Get("Idempotency-Key")
	if len(key) > 255 {
		a.fail(w, r, &httpapi.Error{Status: http.StatusBadRequest, Type: "invalid_input", Message: "Idempotency-Key is longer than 255 bytes"})
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), a.o.RegisterTimeout)
	defer cancel()
	rec, replayed, err := a.svc.Register(ctx, req, key)
	if err != nil {
		a.fail(w, r, a.mapError(err))
		return
	}
	a.feed.registered(rec)
	status := http.StatusCreated
	if req.ActionAttemptID == "" {
		status = http.StatusAccepted // started: the outcome comes later
	}
	if replayed {
		w.Header().Set("Idempotent-Replayed", "true")
		status = http.StatusOK
	}
	w.Header().Set("Location", encodingsPath+"/"+rec.EncodingID)
	writeJSON(w, status, rec)
}

func (a *api) get(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	waitParam := r.URL.Query().Get("wait")
	if waitParam == "" {
		rec, err := a.read(r, id)
		if err != nil {
			a.fail(w, r, a.mapError(err))
			return
		}
		writeJSON(w, http.StatusOK, rec)
		return
	}
	wait, err := time.ParseDuration(waitParam)
	if err != nil || wait <= 0 || wait > a.o.MaxWait {
		a.fail(w, r, &httpapi.Error{Status: http.StatusBadRequest, Type: "invalid_input",
			Message: fmt.Sprintf("wait must be a duration such as 30s, at most %s", a.o.MaxWait)})
		return
	}
	sub, rec, ok := a.follow(w, r, id)
	if !ok {
		return
	}
	if !rec.Status.Terminal() && a.park(w, r, sub, rec, time.Now().Add(wait)) {
		return
	}
	defer a.feed.unsubscribe(sub)
	if rec.Status.Terminal() {
		writeJSON(w, http.StatusOK, rec) // final already: at once
		return
	}
	ctx, cancel := a.waitContext(r, wait)
	defer cancel()
loop:
	for !rec.Status.Terminal() {
		select {
		case next := <-sub.ch:
			if next.Revision > rec.Revision {
				rec = next
			}
		case <-ctx.Done():
			break loop
		}
	}
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(a.o.WriteTimeout))
	writeJSON(w, http.StatusOK, rec)
}

// follow subscribes to an encoding's revisions, then reads it, so that no
// revision falls in between. It answers the error itself (404, 429, 503)
// and reports false then.
func (a *api) follow(w http.ResponseWriter, r *http.Request, id string) (*waiter, encoding.Record, bool) {
	sub, err := a.feed.subscribe(id)
	if err != nil {
		a.svc.metrics.waitersRefused.Inc()
		w.Header().Set("Retry-After", "1")
		a.fail(w, r, &httpapi.Error{Status: http.StatusTooManyRequests, Type: "too_many_waiters", Message: err.Error()})
		return nil, encoding.Record{}, false
	}
	rec, err := a.read(r, id)
	if err != nil {
		a.feed.unsubscribe(sub)
		a.fail(w, r, a.mapError(err))
		return nil, encoding.Record{}, false
	}
	return sub, rec, true
}

// read reads an encoding the request's token reaches; another workspace's
// is encoding.ErrNotFound, so that a token learns nothing of encodings
// outside its workspaces, not even that they exist.
func (a *api) read(r *http.Request, id string) (encoding.Record, error) {
	rec, err := a.svc.Get(r.Context(), id)
	if err != nil {
		return encoding.Record{}, err
	}
	if !accessOf(r).scope.Reaches(rec.WorkspaceID) {
		return encoding.Record{}, encoding.ErrNotFound
	}
	return rec, nil
}

func (a *api) events(w http.ResponseWriter, r *http.Request) {
	sub, rec, ok := a.follow(w, r, r.PathValue("id"))
	if !ok {
		return
	}
	defer a.feed.unsubscribe(sub)
	ctx, cancel := a.waitContext(r, a.o.MaxStream)
	defer cancel()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	send := func(format string, args ...any) bool {
		// Each write has its own deadline: a client that stops reading
		// does not hold the stream (the server sets none for this route).
		_ = rc.SetWriteDeadline(time.Now().Add(a.o.WriteTimeout))
		if _, err := fmt.Fprintf(w, format, args...); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	event := func(rec encoding.Record) bool {
		b, _ := json.Marshal(rec)
		return send("event: %s\ndata: %s\n\n", rec.Status, b)
	}
	if !event(rec) {
		return
	}
	ping := time.NewTicker(a.o.StreamPing)
	defer ping.Stop()
	for !rec.Status.Terminal() {
		select {
		case next := <-sub.ch:
			if next.Revision <= rec.Revision {
				continue
			}
			rec = next
			if !event(rec) {
				return
			}
		case <-ping.C:
			// A comment line keeps idle proxies from cutting the stream.
			if !send(": ping\n\n") {
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

func (a *api) cancel(w http.ResponseWriter, r *http.Request) {
	// A workspace never changes, so the check holds for the cancel.
	if _, err := a.read(r, r.PathValue("id")); err != nil {
		a.fail(w, r, a.mapError(err))
		return
	}
	rec, err := a.svc.Cancel(context.WithoutCancel(r.Context()), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, a.mapError(err))
		return
	}
	writeJSON(w, http.StatusOK, rec)
}

// listPage is the answer of GET /v1/encodings.
type listPage struct {
	Encodings  []encoding.Record `json:"encodings"`
	NextCursor string            `json:"next_cursor,omitempty"`
}

// list answers the pending encodings (of a workspace, or all), oldest
// request first, from the process's in-memory pending index: its cost is
// the page, not the bucket.
func (a *api) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	status, ws, cursor := encoding.Status(q.Get("status")), q.Get("workspace_id"), q.Get("cursor")
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxListLimit {
			a.fail(w, r, &httpapi.Error{Status: http.StatusBadRequest, Type: "invalid_input", Message: fmt.Sprintf("limit must be 1 to %d", maxListLimit)})
			return
		}
		limit = n
	}
	acc := accessOf(r)
	if ws != "" && !acc.scope.Reaches(ws) {
		a.fail(w, r, forbidden(ws))
		return
	}
	if status == "" && ws != "" {
		a.recent(w, r, ws, cursor, limit)
		return
	}
	if status != encoding.StatusPending {
		a.fail(w, r, &httpapi.Error{Status: http.StatusBadRequest, Type: "invalid_input",
			Message: "list status=pending (of a workspace or all), or the recent encodings of a workspace (workspace_id without status); a settled one is read by its id"})
		return
	}
	// Without workspace_id: every workspace the token reaches (nil: all).
	var wss []string
	switch {
	case ws != "":
		wss = []string{ws}
	case !acc.scope.All():
		wss = acc.cfg.Reachable(acc.scope)
	}
	page := listPage{Encodings: []encoding.Record{}}
	for len(page.Encodings) < limit {
		ids, next, err := a.feed.pendingPage(wss, cursor, limit-len(page.Encodings))
		if err != nil {
			a.fail(w, r, &httpapi.Error{Status: http.StatusBadRequest, Type: "invalid_input", Message: err.Error()})
			return
		}
		recs, err := a.pageRecords(r.Context(), ids)
		if err != nil {
			a.fail(w, r, a.mapError(err))
			return
		}
		for _, rec := range recs {
			if rec.EncodingID != "" {
				page.Encodings = append(page.Encodings, rec)
			}
		}
		page.NextCursor, cursor = next, next
		if next == "" {
			break
		}
	}
	writeJSON(w, http.StatusOK, page)
}

// Recent listings read the workspace's outcomes of at most maxRecentSince
// (default defaultRecentSince, ?since=) and at most maxRecentScan of them.
const (
	defaultRecentSince = time.Hour
	maxRecentSince     = 24 * time.Hour
	maxRecentScan      = 20000
)

// recent answers the encodings of a workspace that changed within since,
// newest request first, from the workspace's outcome messages on
// ENCODING_EVENTS (their subject names the workspace): its cost is that
// workspace's revisions in the window, not the bucket. One ordered
// consumer per call: an operator's or a desk's question, not a hot path.
func (a *api) recent(w http.ResponseWriter, r *http.Request, ws, cursor string, limit int) {
	since := defaultRecentSince
	if v := r.URL.Query().Get("since"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 || d > maxRecentSince {
			a.fail(w, r, &httpapi.Error{Status: http.StatusBadRequest, Type: "invalid_input", Message: fmt.Sprintf("since must be a duration up to %s", maxRecentSince)})
			return
		}
		since = d
	}
	after, err := decodeCursor(cursor)
	if err != nil || (cursor != "" && after.id == "") {
		a.fail(w, r, &httpapi.Error{Status: http.StatusBadRequest, Type: "invalid_input", Message: errBadCursor.Error()})
		return
	}
	subj, err := streams.OutcomeSubject(ws, "x")
	if err != nil {
		a.fail(w, r, &httpapi.Error{Status: http.StatusBadRequest, Type: "invalid_input", Message: "workspace_id must be a Seam id"})
		return
	}
	latest, err := a.recentOutcomes(r.Context(), strings.TrimSuffix(subj, ".x")+".>", time.Now().Add(-since))
	if err != nil {
		a.fail(w, r, a.mapError(err))
		return
	}
	recs := make([]encoding.Record, 0, len(latest))
	for _, rec := range latest {
		k := pendingKey{at: rec.RequestedAt, id: rec.EncodingID}
		if cursor == "" || k.compare(after) < 0 {
			recs = append(recs, rec)
		}
	}
	slices.SortFunc(recs, func(x, y encoding.Record) int {
		return pendingKey{at: y.RequestedAt, id: y.EncodingID}.compare(pendingKey{at: x.RequestedAt, id: x.EncodingID})
	})
	page := listPage{Encodings: recs[:min(limit, len(recs))]}
	if len(recs) > limit {
		last := page.Encodings[limit-1]
		page.NextCursor = encodeCursor(pendingKey{at: last.RequestedAt, id: last.EncodingID})
	}
	writeJSON(w, http.StatusOK, page)
}

// recentOutcomes reads the outcome messages on subject since start and
// keeps the latest revision of each encoding.
func (a *api) recentOutcomes(ctx context.Context, subject string, start time.Time) (map[string]encoding.Record, error) {
	cons, err := a.js.OrderedConsumer(ctx, streams.OutcomesStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject}, DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &start,
		// Gone soon after the call, not after the default five minutes.
		InactiveThreshold: 5 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("read outcomes: %w", err)
	}
	latest := map[string]encoding.Record{}
	for scanned := 0; scanned < maxRecentScan; {
		batch, err := cons.FetchNoWait(500)
		if err != nil {
			return nil, fmt.Errorf("read outcomes: %w", err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			var rec encoding.Record
			if json.Unmarshal(m.Data(), &rec) == nil && rec.Revision >= latest[rec.EncodingID].Revision {
				latest[rec.EncodingID] = rec
			}
		}
		if err := batch.Error(); err != nil {
			return nil, fmt.Errorf("read outcomes: %w", err)
		}
		if n == 0 {
			break
		}
		scanned += n
	}
	return latest, nil
}

// pageRecords returns the pending records of ids, in their order: the
// revisions the feed keeps, and a read of the others (then kept). One
// gone or settled meanwhile is left zero, and the feed forgets it. A kept
// revision is as fresh as the feed: a change made on another worker a
// moment ago may not be in it yet (a change made through this one is).
func (a *api) pageRecords(ctx context.Context, ids []string) ([]encoding.Record, error) {
	recs, missing := a.feed.kept(ids)
	if len(missing) == 0 {
		return recs, nil
	}
	read, err := a.readAll(ctx, missing)
	if err != nil {
		return nil, err
	}
	byID := make(map[string]encoding.Record, len(read))
	for i, rec := range read {
		if rec.EncodingID == "" || rec.Status.Terminal() {
			// Gone, or settled a moment ago: the index catches up.
			a.feed.forget(missing[i])
			continue
		}
		a.feed.keep(rec)
		byID[rec.EncodingID] = rec
	}
	for i, id := range ids {
		if recs[i].EncodingID == "" {
			recs[i] = byID[id]
		}
	}
	return recs, nil
}

// pageReads is how many records of a page are read at once.
const pageReads = 16

// readAll reads the records of ids, several at a time; a record that is
// gone is left zero.
func (a *api) readAll(ctx context.Context, ids []string) ([]encoding.Record, error) {
	recs := make([]encoding.Record, len(ids))
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(pageReads)
	for i, id := range ids {
		g.Go(func() error {
			rec, err := a.svc.store.Get(ctx, id)
			if errors.Is(err, encoding.ErrNotFound) {
				return nil
			}
			recs[i] = rec
			return err
		})
	}
	return recs, g.Wait()
}

// mapError turns a service error into the API's answer.
func (a *api) mapError(err error) *httpapi.Error {
	var ve *encoding.ValidationError
	var open *encoding.OpenEncodingError
	var term *encoding.TerminalError
	var start *StartError
	switch {
	case errors.As(err, &start):
		status := http.StatusBadGateway
		switch start.Err.Status {
		case http.StatusBadRequest, http.StatusNotFound, http.StatusConflict, http.StatusTooManyRequests:
			status = start.Err.Status
		}
		return &httpapi.Error{Status: status, Type: start.Err.Type,
			Message: "Seam refused the encode (encoding " + start.Record.EncodingID + " is failed): " + start.Err.Message}
	case errors.Is(err, encoding.ErrTrackOnly):
		return &httpapi.Error{Status: http.StatusNotImplemented, Type: "track_only", Message: err.Error()}
	case errors.As(err, &ve):
		return &httpapi.Error{Status: http.StatusBadRequest, Type: "invalid_input", Message: ve.Error()}
	case errors.As(err, &open):
		return &httpapi.Error{Status: http.StatusConflict, Type: "encoding_pending",
			Message: "encoding " + open.EncodingID + " is already pending for this credential"}
	case errors.As(err, &term):
		return &httpapi.Error{Status: http.StatusConflict, Type: "encoding_final", Message: term.Error()}
	case errors.Is(err, encoding.ErrIdempotencyKeyReused):
		return &httpapi.Error{Status: http.StatusUnprocessableEntity, Type: "idempotency_key_reused", Message: err.Error()}
	case errors.Is(err, encoding.ErrNotFound):
		return &httpapi.Error{Status: http.StatusNotFound, Type: "encoding_not_found", Message: "no such encoding"}
	}
	a.log.Error().Err(err).Msg("request failed on the store")
	return &httpapi.Error{Status: http.StatusServiceUnavailable, Type: "unavailable", Message: "the encoding store is unavailable; retry later"}
}

func (a *api) fail(w http.ResponseWriter, r *http.Request, e *httpapi.Error) {
	ev := a.log.Warn()
	if e.Status >= 500 {
		ev = a.log.Error()
	}
	ev.Str("method", r.Method).Str("path", r.URL.Path).Int("status", e.Status).Str("type", e.Type).Msg(e.Message)
	if e.Status == http.StatusServiceUnavailable {
		httpapi.WriteRetryError(w, e, 2*time.Second)
		return
	}
	httpapi.WriteError(w, e)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := jsonBody(v)
	if err != nil {
		httpapi.WriteError(w, &httpapi.Error{Status: http.StatusInternalServerError, Type: "internal_error", Message: "internal error"})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// jsonBody is v as an answer's body: JSON and a newline.
func jsonBody(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	return append(b, '\n'), err
}
