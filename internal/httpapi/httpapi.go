// Package httpapi holds the one JSON error shape every cardwire HTTP endpoint
// answers with. It is Seam's own error envelope,
// {"error":{"type":"…","message":"…"}}, so a client that already handles
// Seam's errors handles ours.
package httpapi

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/rs/zerolog"
)

// Error is both an error and the body of an error answer.
type Error struct {
	Status  int    `json:"-"`
	Type    string `json:"type"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Type + ": " + e.Message }

type envelope struct {
	Error *Error `json:"error"`
}

// WriteError writes e as the JSON error envelope with e.Status.
func WriteError(w http.ResponseWriter, e *Error) {
	body, err := json.Marshal(envelope{Error: e})
	if err != nil {
		// A struct of two strings always marshals; keep a body anyway.
		body = []byte(`{"error":{"type":"internal_error","message":"internal error"}}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(e.Status)
	_, _ = w.Write(append(body, '\n'))
}

// WriteRetryError writes e with a Retry-After header of d, rounded up to
// whole seconds (at least one).
func WriteRetryError(w http.ResponseWriter, e *Error, d time.Duration) {
	secs := int((d + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
	WriteError(w, e)
}

// NotFound answers 404 for every path that has no route.
func NotFound(w http.ResponseWriter, r *http.Request) {
	WriteError(w, &Error{Status: http.StatusNotFound, Type: "not_found", Message: "no route for " + r.URL.Path})
}

// MethodNotAllowed returns a handler that answers 405 and lists the allowed
// methods in the Allow header.
func MethodNotAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		WriteError(w, &Error{Status: http.StatusMethodNotAllowed, Type: "method_not_allowed",
			Message: r.Method + " is not allowed here; use " + allow})
	}
}

// Recoverer answers 500 with the JSON error shape, and logs, if next panics;
// a panic never takes the process down.
func Recoverer(log zerolog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				log.Error().Interface("panic", v).Str("path", r.URL.Path).Msg("handler panicked")
				WriteError(w, &Error{Status: http.StatusInternalServerError, Type: "internal_error", Message: "internal error"})
			}
		}()
		next.ServeHTTP(w, r)
	})
}
