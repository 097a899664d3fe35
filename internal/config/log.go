package config

import (
	"fmt"
	"io"
	"time"

	"github.com/rs/zerolog"
)

func init() {
	// Durations carry their unit in every log line ("took":"1.5s",
	// "retry_in":"250ms"); zerolog's default is a bare number of
	// milliseconds. Set once, before any logger exists, for the whole
	// process (every binary builds its logger here).
	zerolog.DurationFieldFormat = zerolog.DurationFormatString
}

// Logger builds the process logger from LOG_LEVEL (debug, info, warn, error;
// default info) and LOG_FORMAT (json, the default, or console).
func (e *Env) Logger(w io.Writer) zerolog.Logger {
	levelName := e.String("LOG_LEVEL", "info")
	level, err := zerolog.ParseLevel(levelName)
	if err != nil || level == zerolog.NoLevel {
		e.fail(fmt.Errorf("LOG_LEVEL: want debug, info, warn or error, got %q", levelName))
		level = zerolog.InfoLevel
	}
	switch format := e.String("LOG_FORMAT", "json"); format {
	case "json":
	case "console":
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	default:
		e.fail(fmt.Errorf("LOG_FORMAT: want json or console, got %q", format))
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger()
}
