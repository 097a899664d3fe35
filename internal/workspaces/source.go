package workspaces

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/rs/zerolog"
)

// SourceOptions configure a Source.
type SourceOptions struct {
	// Path is WORKSPACES_FILE.
	Path string
	// Interval is how often the file is read again
	// (WORKSPACES_RELOAD_INTERVAL). A Kubernetes Secret volume swaps a
	// symlink rather than writing the file, so reading its content on a
	// timer is what sees every change.
	Interval time.Duration
	// ReadFile reads the file and the secret files it names; os.ReadFile
	// when nil.
	ReadFile func(string) ([]byte, error)
	// Apply, when set, is handed every new configuration (the first one
	// and each reload) before it is taken; an error refuses it, as if the
	// file did not validate. The receiver builds its verifier here.
	Apply func(*Config) error
	Log   zerolog.Logger
	// Registerer receives the reload metrics.
	Registerer prometheus.Registerer
}

// Validate reports the first option that cannot work.
func (o SourceOptions) Validate() error {
	switch {
	case o.Path == "":
		return errors.New("SourceOptions.Path must be set")
	case o.Interval <= 0:
		return errors.New("SourceOptions.Interval must be positive")
	case o.Registerer == nil:
		return errors.New("SourceOptions.Registerer must be set")
	}
	return nil
}

// Source holds the configuration in force and replaces it when
// WORKSPACES_FILE changes. A file that no longer parses or validates is
// logged and counted, and the last good configuration stays.
type Source struct {
	o   SourceOptions
	cur atomic.Pointer[Config]

	mu      sync.Mutex // one reload at a time
	lastBad [32]byte   // digest of the last refused file: logged once

	errors     prometheus.Counter
	reloads    prometheus.Counter
	successful prometheus.Gauge
}

// Open reads and validates the file once: at start-up a bad file is an
// error (the binary refuses to start naming the entry).
func Open(o SourceOptions) (*Source, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.ReadFile == nil {
		o.ReadFile = os.ReadFile
	}
	s := &Source{o: o}
	c, err := s.load()
	if err != nil {
		return nil, err
	}
	f := promauto.With(o.Registerer)
	s.errors = f.NewCounter(prometheus.CounterOpts{
		Name: "cardwire_config_reload_errors_total",
		Help: "Changed WORKSPACES_FILE contents refused (they did not parse or validate); the last good configuration stays in force.",
	})
	s.reloads = f.NewCounter(prometheus.CounterOpts{
		Name: "cardwire_config_reloads_total",
		Help: "Changed WORKSPACES_FILE contents taken into force.",
	})
	s.successful = f.NewGauge(prometheus.GaugeOpts{
		Name: "cardwire_config_last_reload_successful",
		Help: "1 when the last change of WORKSPACES_FILE was taken, 0 while a refused one is on disk.",
	})
	s.successful.Set(1)
	s.cur.Store(c)
	return s, nil
}

// Static is a Source that never changes: the single-workspace variables,
// or a test's configuration.
func Static(c *Config) *Source {
	s := &Source{}
	s.cur.Store(c)
	return s
}

// Current returns the configuration in force. Take it once per request,
// so that one request sees one configuration.
func (s *Source) Current() *Config { return s.cur.Load() }

func (s *Source) load() (*Config, error) {
	data, err := s.o.ReadFile(s.o.Path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	c, err := Parse(data, filepath.Dir(s.o.Path), s.o.ReadFile)
	if err != nil {
		return nil, err
	}
	if s.o.Apply != nil {
		if err := s.o.Apply(c); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
	}
	return c, nil
}

// Run reads the file every Interval until ctx ends.
func (s *Source) Run(ctx context.Context) {
	if s.o.Path == "" {
		return // Static
	}
	t := time.NewTicker(s.o.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_, _ = s.Reload()
		}
	}
}

// Reload reads the file now and takes it if it changed and is valid. It
// reports whether the configuration changed, and the error that kept the
// last good one in force.
func (s *Source) Reload() (bool, error) {
	if s.o.Path == "" {
		return false, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.cur.Load()
	data, err := s.o.ReadFile(s.o.Path)
	if err == nil {
		c, perr := Parse(data, filepath.Dir(s.o.Path), s.o.ReadFile)
		if perr == nil && c.digest == old.digest {
			// The same as in force (perhaps back from a refused one, which
			// is then reported again if it comes back).
			s.lastBad = [32]byte{}
			s.successful.Set(1)
			return false, nil
		}
		if perr == nil && s.o.Apply != nil {
			if aerr := s.o.Apply(c); aerr != nil {
				perr = fmt.Errorf("%w: %w", ErrInvalid, aerr)
			}
		}
		if perr == nil {
			s.cur.Store(c)
			s.lastBad = [32]byte{}
			s.reloads.Inc()
			s.successful.Set(1)
			s.o.Log.Info().Str("path", s.o.Path).Int("workspaces", len(c.ids)).Strs("changes", c.Changes(old)).
				Msg("WORKSPACES_FILE reloaded")
			return true, nil
		}
		err = perr
	} else {
		err = fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	// Logged and counted once per refused content, not on every poll.
	bad := sha256Of(data, err)
	if bad != s.lastBad {
		s.lastBad = bad
		s.errors.Inc()
		s.o.Log.Error().Err(err).Str("path", s.o.Path).Msg("WORKSPACES_FILE not reloaded; the last good configuration stays in force")
	}
	s.successful.Set(0)
	return false, err
}

func sha256Of(data []byte, err error) [32]byte {
	return sumOf(string(data) + "\x00" + err.Error())
}
