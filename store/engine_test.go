package store

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bondkv/bondkv/internal/base"
	"github.com/cockroachdb/pebble/v2/vfs"
)

func TestCloseIdempotentAndErrClosed(t *testing.T) {
	e, err := Open("/db", &Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	mustInit(t, e, 3, span3)
	mustApply(t, e, 3, entry(1, put("b", "1")))
	open, err := e.NewSnapshot(3) // left open: Close releases it
	if err != nil {
		t.Fatal(err)
	}
	stream, _ := writeSnapshot(t, e, 3)
	if err := e.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	calls := map[string]func() error{
		"Apply":           func() error { _, err := e.Apply(3, []Entry{entry(2, put("b", "2"))}); return err },
		"AppliedIndex":    func() error { _, err := e.AppliedIndex(3); return err },
		"Sync":            e.Sync,
		"Get":             func() error { _, err := e.Get([]byte("b")); return err },
		"GetRecord":       func() error { _, err := e.GetRecord([]byte("b")); return err },
		"Scan":            func() error { _, err := e.Scan(base.FullSpan, 0); return err },
		"NewSnapshot":     func() error { _, err := e.NewSnapshot(3); return err },
		"WriteTo":         func() error { _, err := open.WriteTo(io.Discard); return err },
		"RecoverSnapshot": func() error { return e.RecoverSnapshot(3, bytes.NewReader(stream)) },
		"ClearRange":      func() error { return e.ClearRange(3) },
		"DestroyRange":    func() error { return e.DestroyRange(3) },
		"Checksum":        func() error { _, _, err := e.Checksum(3); return err },
		"InitRange":       func() error { return e.InitRange(5, RangeState{Span: span3}) },
		"RangeState":      func() error { _, _, err := e.RangeState(3); return err },
		"RangeVersion":    func() error { _, err := e.RangeVersion(3); return err },
		"Ranges":          func() error { _, err := e.Ranges(); return err },
		"GetLocal":        func() error { _, err := e.GetLocal(3, []byte("k")); return err },
		"ScanLocal":       func() error { _, err := e.ScanLocal(3, nil, 0); return err },
		"ApproximateSize": func() error { _, err := e.ApproximateSize(span3); return err },
		"SplitKey":        func() error { _, err := e.SplitKey(span3); return err },
		"PutNodeLocal":    func() error { return e.PutNodeLocal("id", []byte("x")) },
		"GetNodeLocal":    func() error { _, err := e.GetNodeLocal("id"); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, base.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
	if err := open.Close(); err != nil {
		t.Errorf("Snapshot.Close after Engine.Close: %v", err)
	}
}

// TestCloseStopsStream checks that Close does not wait for a stream whose reader is slow: a
// stream in progress notices Close and fails with ErrClosed.
func TestCloseStopsStream(t *testing.T) {
	e, err := Open("/db", &Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	mustInit(t, e, 3, span3)
	mustApply(t, e, 3, entry(1, put("b", "1")))
	stream, _ := writeSnapshot(t, e, 3)
	started := make(chan struct{})
	release := make(chan struct{})
	done := make(chan error)
	go func() {
		done <- e.RecoverSnapshot(3, &gatedReader{r: bytes.NewReader(stream), started: started, release: release})
	}()
	<-started
	closed := make(chan error)
	go func() { closed <- e.Close() }()
	<-e.closing // Close has signalled and now waits for the stream
	close(release)
	if err := <-done; !errors.Is(err, base.ErrClosed) {
		t.Fatalf("stream interrupted by Close: %v", err)
	}
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
}

// gatedReader returns one byte, then blocks until release.
type gatedReader struct {
	r       io.Reader
	started chan struct{}
	release chan struct{}
	once    sync.Once
	n       int
}

func (g *gatedReader) Read(p []byte) (int, error) {
	g.n++
	if g.n == 1 {
		return g.r.Read(p[:1])
	}
	g.once.Do(func() { close(g.started) })
	<-g.release
	return g.r.Read(p[:1])
}

func TestOpenOptions(t *testing.T) {
	opts := &Options{CacheSize: -1, MemTableSize: -2}
	before := *opts
	_, err := Open("/db", opts)
	if err == nil || !strings.Contains(err.Error(), "CacheSize") || !strings.Contains(err.Error(), "MemTableSize") {
		t.Fatalf("Open with two bad options: %v (want both reported)", err)
	}
	if *opts != before {
		t.Fatal("Open mutated the options")
	}
	opts = &Options{FS: vfs.NewMem()}
	before = *opts
	e, err := Open("/db", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if *opts != before {
		t.Fatal("Open mutated the options")
	}
	if _, err := Open("", nil); err == nil {
		t.Fatal("Open with an empty dir succeeded")
	}
}

func TestNodeLocal(t *testing.T) {
	fs := vfs.NewMem()
	e, err := Open("/db", &Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.GetNodeLocal("identity"); !errors.Is(err, base.ErrNotFound) {
		t.Fatalf("absent: %v", err)
	}
	if err := e.PutNodeLocal("identity", []byte("n7")); err != nil {
		t.Fatal(err)
	}
	// Node-local keys are in no range: full-span scans, checksums and snapshots ignore them.
	if kvs, _ := e.Scan(base.FullSpan, 0); len(kvs) != 0 {
		t.Fatalf("scan sees node-local keys: %v", kvs)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e, err = Open("/db", &Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	v, err := e.GetNodeLocal("identity")
	if err != nil || string(v) != "n7" {
		t.Fatalf("after reopen: %q, %v", v, err)
	}
	v[0] = 'X' // a copy
	if v, _ := e.GetNodeLocal("identity"); string(v) != "n7" {
		t.Fatal("GetNodeLocal returned a shared slice")
	}
}

func TestPebbleLogger(t *testing.T) {
	var buf bytes.Buffer
	l := pebbleLogger{log: slog.New(slog.NewTextHandler(&buf, nil))}
	l.Infof("flushed %d", 1)
	if buf.Len() != 0 {
		t.Fatalf("Infof logged: %s", buf.String())
	}
	l.Errorf("background error: %s", "disk")
	if !strings.Contains(buf.String(), "level=ERROR") || !strings.Contains(buf.String(), "background error: disk") {
		t.Fatalf("Errorf: %s", buf.String())
	}
	buf.Reset()
	func() {
		defer func() {
			if r := recover(); r == nil || !strings.Contains(r.(string), "wal write failed") {
				t.Fatalf("Fatalf did not panic with its message: %v", r)
			}
		}()
		l.Fatalf("wal write failed: %d", 5)
	}()
	if !strings.Contains(buf.String(), "level=ERROR") || !strings.Contains(buf.String(), "wal write failed: 5") {
		t.Fatalf("Fatalf was not logged before the panic: %s", buf.String())
	}
}

// TestConcurrentUse exercises the engine from several goroutines (for -race).
func TestConcurrentUse(t *testing.T) {
	e := openMem(t)
	mustInit(t, e, 3, base.FullSpan)
	mustInit(t, e, 4, base.FullSpan)
	var wg sync.WaitGroup
	for g := range 4 {
		id := base.RangeID(3 + g%2)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := uint64(1); i <= 50; i++ {
				if g < 2 {
					if _, err := e.Apply(id, []Entry{entry(i, put(string(rune('a'+g)), "v"))}); err != nil {
						t.Error(err)
						return
					}
					continue
				}
				_, _ = e.Get([]byte("a"))
				if _, _, err := e.Checksum(id); err != nil {
					t.Error(err)
					return
				}
				snap, err := e.NewSnapshot(id)
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := snap.WriteTo(io.Discard); err != nil {
					t.Error(err)
				}
				snap.Close()
			}
		}()
	}
	wg.Wait()
}
