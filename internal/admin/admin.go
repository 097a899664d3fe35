// Package admin serves the operator endpoints of a cardwire binary on its
// own port: /metrics from the registry it is given, /healthz (the process is
// alive) and /readyz (every readiness check passes within a short timeout).
// Keeping them off the public port means an Ingress can never expose them.
package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/cardwire/cardwire/internal/httpapi"
)

// NewRegistry returns the registry a binary serves on /metrics, with the Go
// runtime and process collectors already on it.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Check is one named readiness check; Func returns nil when ready.
type Check struct {
	Name string
	Func func(ctx context.Context) error
}

// Options configure Handler.
type Options struct {
	Gatherer prometheus.Gatherer
	// Checks are run in order by /readyz; the first failure answers 503.
	Checks []Check
	// CheckTimeout bounds all checks of one /readyz call.
	CheckTimeout time.Duration
	Log          zerolog.Logger
}

// Validate reports the first option that cannot work.
func (o Options) Validate() error {
	if o.Gatherer == nil {
		return errors.New("Options.Gatherer must be set")
	}
	if o.CheckTimeout <= 0 {
		return errors.New("Options.CheckTimeout must be positive")
	}
	return nil
}

// Handler returns the admin routes.
func Handler(o Options) (http.Handler, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{
		ErrorLog: promLogger{o.Log}, ErrorHandling: promhttp.ContinueOnError,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), o.CheckTimeout)
		defer cancel()
		for _, c := range o.Checks {
			if err := c.Func(ctx); err != nil {
				o.Log.Warn().Err(err).Str("check", c.Name).Msg("not ready")
				httpapi.WriteError(w, &httpapi.Error{Status: http.StatusServiceUnavailable,
					Type: "not_ready", Message: fmt.Sprintf("%s: %v", c.Name, err)})
				return
			}
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.HandleFunc("/", httpapi.NotFound)
	return mux, nil
}

type promLogger struct{ log zerolog.Logger }

func (l promLogger) Println(v ...any) { l.log.Error().Msg(fmt.Sprint(v...)) }
