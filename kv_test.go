package bondkv_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bondkv/bondkv"
)

// fastExpert shortens Raft timeouts so single-node tests elect a leader quickly.
var fastExpert = bondkv.ExpertOptions{RaftTick: 10 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond}

func openT(t *testing.T, dir string, o *bondkv.Options) *bondkv.DB {
	t.Helper()
	if o != nil && o.Logger == nil && os.Getenv("BONDKV_TEST_LOG") != "" {
		c := *o
		c.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel()}))
		o = &c
	}
	db, err := bondkv.Open(dir, o)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestOpenNilReopenKeepsData(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	db := openT(t, dir, nil)
	addr := db.Addr()
	for i := 0; i < 100; i++ {
		if err := db.Put(ctx, []byte(fmt.Sprintf("k%03d", i)), []byte(fmt.Sprintf("v%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Delete(ctx, []byte("k050")); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil { // idempotent
		t.Fatal(err)
	}

	db = openT(t, dir, nil)
	if db.Addr() != addr || db.NodeID() != 1 {
		t.Fatalf("identity changed across restart: %s/%d, was %s/1", db.Addr(), db.NodeID(), addr)
	}
	for i := 0; i < 100; i++ {
		got, err := db.Get(ctx, []byte(fmt.Sprintf("k%03d", i)))
		if i == 50 {
			if !errors.Is(err, bondkv.ErrNotFound) {
				t.Fatalf("deleted key: %q, %v", got, err)
			}
			continue
		}
		if err != nil || string(got) != fmt.Sprintf("v%d", i) {
			t.Fatalf("k%03d after reopen: %q, %v", i, got, err)
		}
	}
	kvs, err := db.Scan(ctx, []byte("k010"), []byte("k020"), 0)
	if err != nil || len(kvs) != 10 || string(kvs[0].Key) != "k010" || string(kvs[9].Value) != "v19" {
		t.Fatalf("scan: %d kvs, %v", len(kvs), err)
	}
	kvs, err = db.Scan(ctx, nil, nil, 5)
	if err != nil || len(kvs) != 5 || string(kvs[4].Key) != "k004" {
		t.Fatalf("scan with limit: %v, %v", kvs, err)
	}
}

func TestBadInputIsTypedAndChangesNothing(t *testing.T) {
	ctx := context.Background()
	db := openT(t, t.TempDir(), &bondkv.Options{Expert: fastExpert})
	if err := db.Put(ctx, []byte("keep"), []byte("me")); err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("x"), bondkv.MaxKeySize+1)
	huge := make([]byte, bondkv.MaxValueSize+1)
	cases := []struct {
		name string
		err  error
		want error
	}{
		{"put empty key", db.Put(ctx, nil, []byte("v")), bondkv.ErrEmptyKey},
		{"put key too large", db.Put(ctx, big, []byte("v")), bondkv.ErrKeyTooLarge},
		{"put value too large", db.Put(ctx, []byte("keep"), huge), bondkv.ErrValueTooLarge},
		{"delete empty key", db.Delete(ctx, []byte{}), bondkv.ErrEmptyKey},
		{"delete key too large", db.Delete(ctx, big), bondkv.ErrKeyTooLarge},
		{"get key too large", errOf(db.Get(ctx, big)), bondkv.ErrKeyTooLarge},
		{"get missing", errOf(db.Get(ctx, []byte("missing"))), bondkv.ErrNotFound},
		{"scan inverted", errOf(db.Scan(ctx, []byte("b"), []byte("a"), 0)), bondkv.ErrInvalidRange},
		{"scan bound too large", errOf(db.Scan(ctx, big, nil, 0)), bondkv.ErrKeyTooLarge},
	}
	for _, c := range cases {
		if !errors.Is(c.err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, c.err, c.want)
		}
	}
	if got, err := db.Get(ctx, []byte("keep")); err != nil || string(got) != "me" {
		t.Fatalf("existing data after bad input: %q, %v", got, err)
	}
	// Exactly at the limits is fine.
	if err := db.Put(ctx, bytes.Repeat([]byte("k"), bondkv.MaxKeySize), make([]byte, bondkv.MaxValueSize)); err != nil {
		t.Fatalf("put at the limits: %v", err)
	}

	db.Close()
	for name, err := range map[string]error{
		"put":    db.Put(ctx, []byte("k"), []byte("v")),
		"get":    errOf(db.Get(ctx, []byte("k"))),
		"delete": db.Delete(ctx, []byte("k")),
		"scan":   errOf(db.Scan(ctx, nil, nil, 0)),
	} {
		if !errors.Is(err, bondkv.ErrClosed) {
			t.Errorf("%s after close: %v", name, err)
		}
	}
}

// testSeed is the seed of a randomized test: 1 unless BONDKV_SEED says otherwise. Failures
// print it.
func testSeed(t *testing.T) uint64 {
	seed := uint64(1)
	if s := os.Getenv("BONDKV_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("BONDKV_SEED: %v", err)
		}
		seed = v
	}
	t.Logf("seed %d (set BONDKV_SEED to change)", seed)
	return seed
}

func errOf[T any](_ T, err error) error { return err }

func TestOptionsValidationReportsEverything(t *testing.T) {
	o := &bondkv.Options{
		ListenAddr: "no-port",
		Peers:      map[uint64]string{0: "bad", 2: "127.0.0.1:1"},
		Expert:     bondkv.ExpertOptions{CacheSize: -1},
	}
	_, err := bondkv.Open(t.TempDir(), o)
	if !errors.Is(err, bondkv.ErrInvalidOptions) {
		t.Fatalf("got %v", err)
	}
	for _, want := range []string{"ListenAddr", "NodeID is required", "node ID 0", "Peers[0]", "negative"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q: %v", want, err)
		}
	}
	if o.ListenAddr != "no-port" || len(o.Peers) != 2 || o.Logger != nil {
		t.Fatalf("Open mutated the caller's options: %+v", o)
	}
}

func TestReopenWithOtherIdentityFails(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, dir, &bondkv.Options{Expert: fastExpert})
	db.Close()
	_, err := bondkv.Open(dir, &bondkv.Options{NodeID: 7, ListenAddr: "127.0.0.1:1"})
	if !errors.Is(err, bondkv.ErrInvalidOptions) || !strings.Contains(err.Error(), "belongs to node 1") {
		t.Fatalf("got %v", err)
	}
	// The directory is still usable afterwards.
	db = openT(t, dir, nil)
	if err := db.Put(context.Background(), []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
}

// TestModelSingleNode runs random operations against the DB and a plain map.
func TestModelSingleNode(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 0))
	ctx := context.Background()
	db := openT(t, t.TempDir(), &bondkv.Options{Expert: fastExpert})
	model := map[string]string{}
	key := func() string { return fmt.Sprintf("k%02d", rng.IntN(60)) }
	for op := 0; op < 600; op++ {
		switch r := rng.IntN(10); {
		case r < 5:
			k, v := key(), fmt.Sprintf("v%d", op)
			if err := db.Put(ctx, []byte(k), []byte(v)); err != nil {
				t.Fatalf("seed %d op %d: %v", seed, op, err)
			}
			model[k] = v
		case r < 7:
			k := key()
			if err := db.Delete(ctx, []byte(k)); err != nil {
				t.Fatalf("seed %d op %d: %v", seed, op, err)
			}
			delete(model, k)
		case r < 9:
			k := key()
			got, err := db.Get(ctx, []byte(k))
			want, ok := model[k]
			if ok != (err == nil) || (ok && string(got) != want) || (!ok && !errors.Is(err, bondkv.ErrNotFound)) {
				t.Fatalf("seed %d op %d: get %s = %q, %v; model %q, %v", seed, op, k, got, err, want, ok)
			}
		default:
			a, b := key(), key()
			if a > b {
				a, b = b, a
			}
			if a == b {
				b += "\x00"
			}
			limit := rng.IntN(8)
			kvs, err := db.Scan(ctx, []byte(a), []byte(b), limit)
			if err != nil {
				t.Fatalf("seed %d op %d: %v", seed, op, err)
			}
			var want []string
			for k := range model {
				if k >= a && k < b {
					want = append(want, k)
				}
			}
			sort.Strings(want)
			if limit > 0 && len(want) > limit {
				want = want[:limit]
			}
			if len(kvs) != len(want) {
				t.Fatalf("seed %d op %d: scan [%s,%s) limit %d: %d keys, want %d", seed, op, a, b, limit, len(kvs), len(want))
			}
			for i, kv := range kvs {
				if string(kv.Key) != want[i] || string(kv.Value) != model[want[i]] {
					t.Fatalf("seed %d op %d: scan item %d = %s=%s, want %s=%s", seed, op, i, kv.Key, kv.Value, want[i], model[want[i]])
				}
			}
		}
	}
}

func TestOptionsTimingAndAddresses(t *testing.T) {
	cases := []struct {
		name string
		o    bondkv.Options
		want string
	}{
		{"election under 5 ticks", bondkv.Options{Expert: bondkv.ExpertOptions{ElectionTimeout: 100 * time.Millisecond}}, "at least 5 Raft ticks"},
		{"tick under 1ms", bondkv.Options{Expert: bondkv.ExpertOptions{RaftTick: 500 * time.Microsecond}}, "below 1ms"},
		{"listen address differs from Peers", bondkv.Options{NodeID: 1, ListenAddr: "127.0.0.1:2",
			Peers: map[uint64]string{1: "127.0.0.1:1"}}, "differs from this node's address"},
	}
	for _, c := range cases {
		_, err := bondkv.Open(t.TempDir(), &c.o)
		if !errors.Is(err, bondkv.ErrInvalidOptions) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v", c.name, err)
		}
	}
	// Without ListenAddr a node listens where Peers says it is.
	addr := freeLoopbackAddr(t)
	db := openT(t, t.TempDir(), &bondkv.Options{NodeID: 1, Peers: map[uint64]string{1: addr}, Expert: fastExpert})
	if db.Addr() != addr {
		t.Fatalf("listening on %s, Peers says %s", db.Addr(), addr)
	}
	if err := db.Put(context.Background(), []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
}

func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
