package bench

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	dto "github.com/prometheus/client_model/go"
)

// pebbleEngine is the baseline: one pebble/v2 DB with default options, every Set synced. Concurrent
// synced Sets share WAL fsyncs (pebble's group commit), which Details reports.
type pebbleEngine struct {
	db   *pebble.DB
	puts atomic.Int64
}

func (e *pebbleEngine) Open(_ context.Context, cfg EngineConfig) error {
	db, err := pebble.Open(cfg.Dir, &pebble.Options{Logger: pebbleLogger{cfg.Logger}})
	if err != nil {
		return fmt.Errorf("pebble: open %s: %w", cfg.Dir, err)
	}
	e.db = db
	return nil
}

func (e *pebbleEngine) Put(_ context.Context, key, value []byte) error {
	if err := e.db.Set(key, value, pebble.Sync); err != nil {
		return fmt.Errorf("pebble: set: %w", err)
	}
	e.puts.Add(1)
	return nil
}

func (e *pebbleEngine) Details() map[string]any {
	m := e.db.Metrics()
	d := map[string]any{
		"puts":              e.puts.Load(),
		"wal_bytes_written": m.WAL.BytesWritten,
		"flushes":           m.Flush.Count,
		"compactions":       m.Compact.Count,
	}
	if h := m.LogWriter.FsyncLatency; h != nil {
		var pm dto.Metric
		if err := h.Write(&pm); err == nil && pm.Histogram != nil {
			fsyncs := pm.Histogram.GetSampleCount()
			d["wal_fsyncs"] = fsyncs
			if fsyncs > 0 {
				d["puts_per_wal_fsync"] = round2(float64(e.puts.Load()) / float64(fsyncs))
			}
		}
	}
	return d
}

func (e *pebbleEngine) Close() error {
	if e.db == nil {
		return nil
	}
	err := e.db.Close()
	e.db = nil
	if err != nil {
		return fmt.Errorf("pebble: close: %w", err)
	}
	return nil
}

// pebbleLogger routes pebble's logs to slog: Info one level down (it is chatty), Fatal as an error
// followed by a panic (pebble's own no-op logger would swallow a Fatalf and carry on).
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Debug(fmt.Sprintf(format, args...), "component", "pebble")
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
}

func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.l.Error(msg, "component", "pebble", "fatal", true)
	panic("pebble: fatal: " + msg)
}
