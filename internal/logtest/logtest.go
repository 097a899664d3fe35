// Package logtest collects JSON log lines written by code under test and
// lets a test wait for a line, instead of sleeping. Only *_test.go files
// import it.
package logtest

import (
	"bytes"
	"encoding/json"
	"sync"
	"testing"
	"time"
)

// Sink is an io.Writer for a zerolog logger; safe for concurrent writers.
type Sink struct {
	mu      sync.Mutex
	lines   []map[string]any
	raw     bytes.Buffer
	changed chan struct{}
}

// NewSink returns an empty Sink.
func NewSink() *Sink { return &Sink{changed: make(chan struct{})} }

func (s *Sink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.raw.Write(p)
	for line := range bytes.Lines(p) {
		var m map[string]any
		if json.Unmarshal(line, &m) == nil {
			s.lines = append(s.lines, m)
		}
	}
	close(s.changed)
	s.changed = make(chan struct{})
	return len(p), nil
}

// String is everything written so far.
func (s *Sink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.raw.String()
}

// Wait returns the first line with message msg (and component, unless
// empty), waiting up to 20s for it to be written.
func (s *Sink) Wait(t testing.TB, msg, component string) map[string]any {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		s.mu.Lock()
		for _, l := range s.lines {
			if l["message"] == msg && (component == "" || l["component"] == component) {
				s.mu.Unlock()
				return l
			}
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-timeout:
			t.Fatalf("no log line %q from %q within 20s", msg, component)
		}
	}
}
