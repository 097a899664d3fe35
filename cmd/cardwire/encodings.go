package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cardwire/cardwire/internal/config"
	"github.com/cardwire/cardwire/internal/encoding"
)

const defaultWorkerURL = "http://127.0.0.1:8081"

const workerVars = `
environment: WORKER_API_URL (default ` + defaultWorkerURL + `), WORKER_API_TOKEN (or WORKER_API_TOKEN_FILE).`

// workerAPI calls the worker's /v1/encodings.
type workerAPI struct {
	base  string
	token string
	http  *http.Client
}

func (c *cli) worker() (*workerAPI, error) {
	env := &config.Env{Getenv: c.getenv}
	raw := env.String("WORKER_API_URL", defaultWorkerURL)
	token := env.Secret("WORKER_API_TOKEN").Reveal()
	if err := env.Err(); err != nil {
		return nil, err
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("WORKER_API_URL must be an absolute http(s) URL such as %s, got %q", defaultWorkerURL, raw)
	}
	// The API's own path is added here; a URL that already names it works.
	base := strings.TrimSuffix(strings.TrimRight(raw, "/"), "/v1/encodings")
	return &workerAPI{base: base, token: token, http: &http.Client{}}, nil
}

// apiError is the worker's error envelope.
type apiError struct {
	Status  int
	Type    string `json:"type"`
	Message string `json:"message"`
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Type, e.Message) }

// call makes one request and decodes a 2xx JSON answer into out; other
// answers become one line naming what to check.
func (w *workerAPI) call(ctx context.Context, method, path string, q url.Values, timeout time.Duration, out any) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	target := w.base + path
	if len(q) > 0 {
		target += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, target, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if w.token != "" {
		req.Header.Set("Authorization", "Bearer "+w.token)
	}
	resp, err := w.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the worker API at %s: set WORKER_API_URL (default %s), or start the worker (%w)", w.base, defaultWorkerURL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("worker API at %s: reading the answer: %w", w.base, err)
	}
	if resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(body, out); err != nil {
			return fmt.Errorf("WORKER_API_URL %s did not answer %s with the worker's JSON: is it the worker's API port (8081)? (%w)", w.base, path, err)
		}
		return nil
	}
	var env struct {
		Error apiError `json:"error"`
	}
	e := &env.Error
	if json.Unmarshal(body, &env) != nil || e.Type == "" {
		e.Type, e.Message = "http_"+strconv.Itoa(resp.StatusCode), oneLine(string(body), 200)
	}
	e.Status = resp.StatusCode
	switch {
	case e.Status == http.StatusUnauthorized && w.token == "":
		return fmt.Errorf("the worker API at %s needs a token: set WORKER_API_TOKEN (or WORKER_API_TOKEN_FILE)", w.base)
	case e.Status == http.StatusUnauthorized:
		return fmt.Errorf("the worker API at %s refused the token (401): set WORKER_API_TOKEN (or WORKER_API_TOKEN_FILE) to one it accepts", w.base)
	case e.Status == http.StatusNotFound && e.Type != "encoding_not_found":
		return fmt.Errorf("WORKER_API_URL %s does not serve %s (404 %s): is it the worker's API port (8081)?", w.base, path, e.Type)
	}
	return e
}

func encodingsGet(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("encodings get", "usage: cardwire encodings get <encoding_id> [--wait 30s]\n\nOne encoding from the worker API."+workerVars)
	wait := fs.Duration("wait", 0, "wait up to this long for it to settle (at most the worker's WORKER_API_MAX_WAIT)")
	pos, err := c.parseArgs(fs, args, 1, "an encoding id")
	if err != nil {
		return done(err)
	}
	if *wait < 0 {
		return usagef("--wait must not be negative")
	}
	api, err := c.worker()
	if err != nil {
		return err
	}
	q := url.Values{}
	if *wait > 0 {
		q.Set("wait", wait.String())
	}
	var rec encoding.Record
	if err := api.call(ctx, http.MethodGet, "/v1/encodings/"+url.PathEscape(pos[0]), q, *wait+15*time.Second, &rec); err != nil {
		return explainEncoding(pos[0], err)
	}
	return c.printRecord(rec)
}

func explainEncoding(id string, err error) error {
	var e *apiError
	if errors.As(err, &e) {
		switch e.Type {
		case "encoding_not_found":
			return fmt.Errorf("no encoding %s (404)", id)
		case "encoding_final":
			return fmt.Errorf("encoding %s is settled already: only a pending one can be canceled (409: %s)", id, e.Message)
		}
		return fmt.Errorf("worker API: %w", e)
	}
	return err
}

func (c *cli) printRecord(rec encoding.Record) error {
	if c.json() {
		return c.writeJSON(rec)
	}
	var resolved, issued, errText string
	if rec.ResolvedAt != nil {
		resolved = stamp(*rec.ResolvedAt)
	}
	if rec.IssuedAt != nil {
		issued = stamp(*rec.IssuedAt)
	}
	if rec.Error != nil {
		errText = rec.Error.Type + ": " + rec.Error.Message
	}
	return c.fields("encoding_id", rec.EncodingID, "status", string(rec.Status), "revision", strconv.FormatUint(rec.Revision, 10),
		"workspace_id", rec.WorkspaceID, "acs_encoder_id", rec.AcsEncoderID, "acs_credential_id", rec.AcsCredentialID,
		"access_method_id", rec.AccessMethodID, "action_attempt_id", rec.ActionAttemptID, "issue_kind", rec.IssueKind,
		"requested_at", stamp(rec.RequestedAt), "deadline", stamp(rec.Deadline), "resolved_at", resolved,
		"resolved_by", rec.ResolvedBy, "event_id", rec.EventID, "card_number", rec.CardNumber, "issued_at", issued,
		"error", errText)
}

func encodingsList(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("encodings list",
		"usage: cardwire encodings list [--status pending] [--workspace W] [--since 1h] [--limit N] [--cursor C]\n\n"+
			"The pending encodings (of --workspace, or of every workspace the token reaches), oldest request\n"+
			"first; with --workspace and no --status, that workspace's recent encodings (changed within\n"+
			"--since), newest first."+workerVars)
	status := fs.String("status", "", "pending (the default without --workspace)")
	since := fs.Duration("since", 0, "with --workspace and no --status: how far back (default 1h, at most 24h)")
	limit := fs.Int("limit", 100, "list at most this many (1 to 10000)")
	cursor := fs.String("cursor", "", "continue after a previous list (its next_cursor)")
	if _, err := c.parseArgs(fs, args, 0, ""); err != nil {
		return done(err)
	}
	if *limit < 1 || *limit > 10000 {
		return usagef("--limit must be 1 to 10000, got %d", *limit)
	}
	if *status != "" && *status != string(encoding.StatusPending) {
		return usagef("--status can only be pending: a settled encoding is read by its id (encodings get), or listed among a workspace's recent ones (--workspace without --status)")
	}
	ws, err := c.workspaceID()
	if err != nil {
		return err
	}
	if ws == "" {
		*status = string(encoding.StatusPending)
	}
	if *since != 0 && (*status != "" || *since < 0) {
		return usagef("--since goes with --workspace and no --status, and must be positive")
	}
	api, err := c.worker()
	if err != nil {
		return err
	}
	var page struct {
		Encodings  []encoding.Record `json:"encodings"`
		NextCursor string            `json:"next_cursor,omitempty"`
	}
	list := []encoding.Record{}
	next := *cursor
	for {
		q := url.Values{}
		if *status != "" {
			q.Set("status", *status)
		}
		if ws != "" {
			q.Set("workspace_id", ws)
		}
		if *since > 0 {
			q.Set("since", since.String())
		}
		if next != "" {
			q.Set("cursor", next)
		}
		// Pages end where the limit does, so next_cursor continues it.
		q.Set("limit", strconv.Itoa(min(*limit-len(list), 500)))
		page.Encodings, page.NextCursor = nil, ""
		if err := api.call(ctx, http.MethodGet, "/v1/encodings", q, 30*time.Second, &page); err != nil {
			return explainEncoding("", err)
		}
		list = append(list, page.Encodings...)
		next = page.NextCursor
		if next == "" || len(list) >= *limit {
			break
		}
	}
	if c.json() {
		return c.writeJSON(struct {
			Encodings  []encoding.Record `json:"encodings"`
			NextCursor string            `json:"next_cursor,omitempty"`
		}{list, next})
	}
	if len(list) == 0 {
		what := "no pending encodings"
		if *status == "" {
			what = "no recent encodings"
		}
		_, err := fmt.Fprintln(c.stdout, what)
		return err
	}
	var rows [][]string
	for _, r := range list {
		target := r.AcsCredentialID
		if target == "" {
			target = "am:" + r.AccessMethodID
		}
		var errType string
		if r.Error != nil {
			errType = r.Error.Type
		}
		rows = append(rows, []string{r.EncodingID, r.WorkspaceID, string(r.Status), target, stamp(r.RequestedAt), stamp(r.Deadline), r.ResolvedBy, errType})
	}
	if err := c.table([]string{"ENCODING_ID", "WORKSPACE_ID", "STATUS", "CREDENTIAL", "REQUESTED_AT", "DEADLINE", "RESOLVED_BY", "ERROR"}, rows); err != nil {
		return err
	}
	if next != "" {
		_, err = fmt.Fprintf(c.stdout, "(more: --cursor %s)\n", next)
	}
	return err
}

func encodingsCancel(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("encodings cancel", "usage: cardwire encodings cancel <encoding_id>\n\nCancels a pending encoding (canceled, published like every outcome); a repeat answers the same."+workerVars)
	pos, err := c.parseArgs(fs, args, 1, "an encoding id")
	if err != nil {
		return done(err)
	}
	api, err := c.worker()
	if err != nil {
		return err
	}
	var rec encoding.Record
	if err := api.call(ctx, http.MethodDelete, "/v1/encodings/"+url.PathEscape(pos[0]), nil, 30*time.Second, &rec); err != nil {
		return explainEncoding(pos[0], err)
	}
	return c.printRecord(rec)
}
