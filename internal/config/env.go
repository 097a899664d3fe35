package config

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Env reads variables through Getenv, collecting every error so that a
// misconfigured process reports all its mistakes at once.
type Env struct {
	Getenv func(string) string
	// ReadFile reads *_FILE secrets; os.ReadFile when nil.
	ReadFile func(string) ([]byte, error)
	errs     []error
	reads    []Read
}

// Reads returns every lookup made so far, in order, with the default each
// was given (durations as FormatDuration shows them; "" for secrets and
// unset strings). Tests hold them against the binary's Vars.
func (e *Env) Reads() []Read { return e.reads }

func (e *Env) read(name, def string) { e.reads = append(e.reads, Read{name, def}) }

// Err returns every error met so far, joined, or nil.
func (e *Env) Err() error { return errors.Join(e.errs...) }

func (e *Env) fail(err error) { e.errs = append(e.errs, err) }

func (e *Env) lookup(name string) (string, bool) {
	v := strings.TrimSpace(e.Getenv(name))
	return v, v != ""
}

// String returns the variable or def when unset.
func (e *Env) String(name, def string) string {
	e.read(name, def)
	if v, ok := e.lookup(name); ok {
		return v
	}
	return def
}

// Duration parses a Go duration string (500ms, 30s, 15m); it must be positive.
func (e *Env) Duration(name string, def time.Duration) time.Duration {
	e.read(name, FormatDuration(def))
	v, ok := e.lookup(name)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		e.fail(fmt.Errorf("%s: want a positive Go duration such as 30s or 5m, got %q", name, v))
		return def
	}
	return d
}

// Int parses a positive integer.
func (e *Env) Int(name string, def int) int {
	e.read(name, strconv.Itoa(def))
	v, ok := e.lookup(name)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		e.fail(fmt.Errorf("%s: want a positive integer, got %q", name, v))
		return def
	}
	return n
}

// Bool parses true/false (and the other forms strconv.ParseBool accepts).
func (e *Env) Bool(name string, def bool) bool {
	e.read(name, strconv.FormatBool(def))
	v, ok := e.lookup(name)
	if !ok {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		e.fail(fmt.Errorf("%s: want true or false, got %q", name, v))
		return def
	}
	return b
}

// Secrets reads a list of secrets from name (comma-separated) or from the file
// named by name_FILE (one per line, or comma-separated). Setting both is an
// error; setting neither returns no secrets and no error, so the caller
// decides whether that is fatal. Values never appear in errors.
func (e *Env) Secrets(name string) []Secret {
	raw, ok := e.secretText(name)
	if !ok {
		return nil
	}
	var out []Secret
	for line := range strings.Lines(raw) {
		for part := range strings.SplitSeq(line, ",") {
			if s := strings.TrimSpace(part); s != "" {
				out = append(out, Secret(s))
			}
		}
	}
	return out
}

// Secret reads one secret from name or name_FILE, with the same rules as
// Secrets; the file's surrounding whitespace is trimmed.
func (e *Env) Secret(name string) Secret {
	raw, ok := e.secretText(name)
	if !ok {
		return ""
	}
	return Secret(strings.TrimSpace(raw))
}

func (e *Env) secretText(name string) (string, bool) {
	fileVar := name + "_FILE"
	e.read(name, "")
	e.read(fileVar, "")
	v, hasValue := e.lookup(name)
	path, hasFile := e.lookup(fileVar)
	switch {
	case hasValue && hasFile:
		e.fail(fmt.Errorf("at most one of %s and %s may be set", name, fileVar))
		return "", false
	case hasValue:
		return v, true
	case hasFile:
		read := e.ReadFile
		if read == nil {
			read = os.ReadFile
		}
		b, err := read(path)
		if err != nil {
			// The path is not secret; the content never reaches the error.
			e.fail(fmt.Errorf("%s: %w", fileVar, err))
			return "", false
		}
		return string(b), true
	}
	return "", false
}
