package store

import (
	"fmt"
	"log/slog"
)

// pebbleLogger routes pebble's logging into the engine's slog.Logger: Info is dropped (pebble is
// chatty about flushes and compactions), Errorf becomes an Error record, and Fatalf becomes an
// Error record followed by a panic. Pebble calls Fatalf on unrecoverable conditions (a failed WAL
// write, detected corruption) and relies on it not returning; swallowing it, as pebble's no-op
// logger does, would let the engine continue in an undefined state.
type pebbleLogger struct {
	log *slog.Logger
}

func (l pebbleLogger) Infof(string, ...any) {}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error(fmt.Sprintf(format, args...), "component", "pebble")
}

func (l pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.log.Error(msg, "component", "pebble", "fatal", true)
	panic("store: pebble fatal error: " + msg)
}
