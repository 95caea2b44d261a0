package raftgroup

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/bondkv/bondkv/internal/base"
	"github.com/bondkv/bondkv/store"
)

// recorder is a slog.Handler that keeps every record at or above its level.
type recorder struct {
	level slog.Level
	mu    sync.Mutex
	recs  []slog.Record
}

func (r *recorder) Enabled(_ context.Context, l slog.Level) bool { return l >= r.level }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec)
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

func (r *recorder) dragonboat() (n int, minLevel slog.Level) {
	r.mu.Lock()
	defer r.mu.Unlock()
	minLevel = slog.LevelError + 1
	for _, rec := range r.recs {
		rec.Attrs(func(a slog.Attr) bool {
			if a.Key == "component" && strings.HasPrefix(a.Value.String(), "dragonboat/") {
				n++
				minLevel = min(minLevel, rec.Level)
			}
			return true
		})
	}
	return n, minLevel
}

// startLogged starts a one-node group whose Host logs to a recorder at level.
func startLogged(t *testing.T, level slog.Level) *recorder {
	t.Helper()
	rec := &recorder{level: level}
	dir := t.TempDir()
	e, err := store.Open(filepath.Join(dir, "data"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.InitRange(testRange, store.RangeState{Span: base.FullSpan, Generation: 1}); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	h, err := NewHost(Config{NodeID: 1, Dir: dir, RaftAddress: addr, Engine: e, Logger: slog.New(rec)})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { h.Close(); e.Close() }()
	if err := h.StartReplica(Replica{Range: testRange, Members: map[uint64]string{1: addr}}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.WaitLeader(context.Background(), testRange); err != nil {
		t.Fatal(err)
	}
	return rec
}

func TestDragonboatLogsRoutedAndQuiet(t *testing.T) {
	verbose := startLogged(t, slog.LevelDebug-8)
	if n, _ := verbose.dragonboat(); n == 0 {
		t.Fatal("no dragonboat messages reached the node's logger")
	}
	quiet := startLogged(t, slog.LevelInfo)
	if n, lvl := quiet.dragonboat(); n > 0 {
		t.Fatalf("a normal start logged %d dragonboat messages at Info or above (lowest %v)", n, lvl)
	}
}
