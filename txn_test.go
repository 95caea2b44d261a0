package bondkv_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/bondkv/bondkv"
)

// openTxnDB opens a single node with its keyspace pre-split at the given keys.
func openTxnDB(t *testing.T, splits ...string) *bondkv.DB {
	t.Helper()
	db := openT(t, t.TempDir(), &bondkv.Options{Expert: fastExpert})
	for _, k := range splits {
		if err := db.Split(context.Background(), []byte(k)); err != nil {
			t.Fatalf("split at %q: %v", k, err)
		}
	}
	return db
}

func mustGet(t *testing.T, db *bondkv.DB, key string) string {
	t.Helper()
	v, err := db.Get(context.Background(), []byte(key))
	if errors.Is(err, bondkv.ErrNotFound) {
		return "<none>"
	}
	if err != nil {
		t.Fatalf("get %q: %v", key, err)
	}
	return string(v)
}

// TestTxnPaths commits through both paths and reads the results back, in and out of
// transactions.
func TestTxnPaths(t *testing.T) {
	db := openTxnDB(t, "m")
	ctx := context.Background()
	// One range: 1PC.
	if err := db.Update(ctx, func(tx *bondkv.Txn) error {
		if err := tx.Put([]byte("a"), []byte("1")); err != nil {
			return err
		}
		if err := tx.Put([]byte("b"), []byte("2")); err != nil {
			return err
		}
		v, err := tx.Get([]byte("a"))
		if err != nil || string(v) != "1" {
			return fmt.Errorf("own write: %q, %v", v, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// Two ranges: 2PC, with a delete and a read of an absent key.
	if err := db.Update(ctx, func(tx *bondkv.Txn) error {
		if _, err := tx.Get([]byte("zz")); !errors.Is(err, bondkv.ErrNotFound) {
			return fmt.Errorf("absent key: %v", err)
		}
		if err := tx.Put([]byte("x"), []byte("3")); err != nil {
			return err
		}
		return tx.Delete([]byte("b"))
	}); err != nil {
		t.Fatal(err)
	}
	st := db.Inspect().TxnStats()
	if st.Commits1PC != 1 || st.Commits2PC != 1 {
		t.Fatalf("stats %+v: want one commit on each path", st)
	}
	for k, want := range map[string]string{"a": "1", "b": "<none>", "x": "3"} {
		if got := mustGet(t, db, k); got != want {
			t.Errorf("%s = %s, want %s", k, got, want)
		}
	}
	var seen []string
	if err := db.View(ctx, func(tx *bondkv.Txn) error {
		kvs, err := tx.Scan(nil, nil, 0)
		if err != nil {
			return err
		}
		seen = seen[:0]
		for _, kv := range kvs {
			seen = append(seen, string(kv.Key)+"="+string(kv.Value))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(seen) != "[a=1 x=3]" {
		t.Fatalf("scan: %v", seen)
	}
}

// TestTxnLostUpdate: concurrent read-modify-write increments of one counter, in one range and
// across two, lose none.
func TestTxnLostUpdate(t *testing.T) {
	db := openTxnDB(t, "m")
	ctx := context.Background()
	const workers, each = 4, 15
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				err := db.Update(ctx, func(tx *bondkv.Txn) error {
					for _, k := range []string{"c", "z-count"} { // ranges [.., m) and [m, ..)
						n := 0
						if v, err := tx.Get([]byte(k)); err == nil {
							n, _ = strconv.Atoi(string(v))
						} else if !errors.Is(err, bondkv.ErrNotFound) {
							return err
						}
						if err := tx.Put([]byte(k), []byte(strconv.Itoa(n+1))); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, k := range []string{"c", "z-count"} {
		if got := mustGet(t, db, k); got != strconv.Itoa(workers*each) {
			t.Errorf("%s = %s, want %d", k, got, workers*each)
		}
	}
	t.Logf("stats %+v", db.Inspect().TxnStats())
}

// TestTxnWriteSkew: the on-call rule "at least one doctor on call" holds when two transactions
// each read both doctors and take a different one off call (the classic write skew), in one
// range and across ranges.
func TestTxnWriteSkew(t *testing.T) {
	for _, keys := range [][2]string{{"doc-a", "doc-b"}, {"doc-a", "zdoc-b"}} {
		t.Run(keys[1], func(t *testing.T) {
			db := openTxnDB(t, "m")
			ctx := context.Background()
			for round := 0; round < 10; round++ {
				for _, k := range keys {
					if err := db.Put(ctx, []byte(k), []byte("on")); err != nil {
						t.Fatal(err)
					}
				}
				var wg sync.WaitGroup
				start := make(chan struct{})
				for i := 0; i < 2; i++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-start
						err := db.Update(ctx, func(tx *bondkv.Txn) error {
							on := 0
							for _, k := range keys {
								v, err := tx.Get([]byte(k))
								if err != nil {
									return err
								}
								if string(v) == "on" {
									on++
								}
							}
							if on < 2 {
								return nil // someone is already off: stay on call
							}
							return tx.Put([]byte(keys[i]), []byte("off"))
						})
						if err != nil {
							t.Error(err)
						}
					}()
				}
				close(start)
				wg.Wait()
				if mustGet(t, db, keys[0]) == "off" && mustGet(t, db, keys[1]) == "off" {
					t.Fatalf("round %d: write skew: both doctors went off call", round)
				}
			}
		})
	}
}

// TestTxnReadSkew: a reader of two accounts across ranges never sees a transfer half done.
func TestTxnReadSkew(t *testing.T) {
	db := openTxnDB(t, "m")
	ctx := context.Background()
	a, b := []byte("acct-a"), []byte("zacct-b")
	for _, k := range [][]byte{a, b} {
		if err := db.Put(ctx, k, []byte("100")); err != nil {
			t.Fatal(err)
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			err := db.Update(ctx, func(tx *bondkv.Txn) error {
				from, to := a, b
				if i%2 == 1 {
					from, to = b, a
				}
				fv, err := tx.Get(from)
				if err != nil {
					return err
				}
				tv, err := tx.Get(to)
				if err != nil {
					return err
				}
				f, _ := strconv.Atoi(string(fv))
				g, _ := strconv.Atoi(string(tv))
				if err := tx.Put(from, []byte(strconv.Itoa(f-7))); err != nil {
					return err
				}
				return tx.Put(to, []byte(strconv.Itoa(g+7)))
			})
			if err != nil {
				t.Error(err)
				return
			}
		}
	}()
	deadline := time.Now().Add(3 * time.Second)
	views := 0
	for time.Now().Before(deadline) {
		err := db.View(ctx, func(tx *bondkv.Txn) error {
			av, err := tx.Get(a)
			if err != nil {
				return err
			}
			bv, err := tx.Get(b)
			if err != nil {
				return err
			}
			x, _ := strconv.Atoi(string(av))
			y, _ := strconv.Atoi(string(bv))
			if x+y != 200 {
				return fmt.Errorf("read skew: %d + %d", x, y)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		views++
	}
	close(stop)
	wg.Wait()
	t.Logf("%d consistent views; stats %+v", views, db.Inspect().TxnStats())
}

// TestTxnBadInput: a transaction over the size limits, a write in View, a Txn used after its
// function, a commit racing a merge of its range, and a closed DB each give a typed error and
// leave nothing half-applied.
func TestTxnBadInput(t *testing.T) {
	db := openT(t, t.TempDir(), &bondkv.Options{Expert: fastExpert, Txn: bondkv.TxnOptions{MaxKeys: 8, MaxBytes: 1 << 10}})
	ctx := context.Background()
	if err := db.Split(ctx, []byte("m")); err != nil {
		t.Fatal(err)
	}

	// Too many keys, too many bytes: refused while buffering; nothing applied.
	for name, fn := range map[string]func(tx *bondkv.Txn) error{
		"keys": func(tx *bondkv.Txn) error {
			for i := 0; i < 9; i++ {
				if err := tx.Put([]byte(fmt.Sprintf("big-%d", i)), []byte("x")); err != nil {
					return err
				}
			}
			return nil
		},
		"bytes": func(tx *bondkv.Txn) error {
			if err := tx.Put([]byte("big-0"), make([]byte, 600)); err != nil {
				return err
			}
			return tx.Put([]byte("zbig-1"), make([]byte, 600))
		},
	} {
		err := db.Update(ctx, fn)
		if !errors.Is(err, bondkv.ErrTxnTooLarge) {
			t.Fatalf("%s: %v, want ErrTxnTooLarge", name, err)
		}
		if got := mustGet(t, db, "big-0"); got != "<none>" {
			t.Fatalf("%s: a refused transaction left big-0 = %s", name, got)
		}
	}
	// Oversized key and value inside a transaction.
	if err := db.Update(ctx, func(tx *bondkv.Txn) error { return tx.Put(make([]byte, bondkv.MaxKeySize+1), nil) }); !errors.Is(err, bondkv.ErrKeyTooLarge) {
		t.Fatalf("oversized key: %v", err)
	}
	if err := db.Update(ctx, func(tx *bondkv.Txn) error { return tx.Put([]byte("k"), make([]byte, bondkv.MaxValueSize+1)) }); !errors.Is(err, bondkv.ErrValueTooLarge) {
		t.Fatalf("oversized value: %v", err)
	}
	// Writes in View; a Txn kept past its function.
	var kept *bondkv.Txn
	if err := db.View(ctx, func(tx *bondkv.Txn) error { kept = tx; return tx.Put([]byte("k"), []byte("v")) }); !errors.Is(err, bondkv.ErrReadOnly) {
		t.Fatalf("write in View: %v", err)
	}
	if _, err := kept.Get([]byte("k")); !errors.Is(err, bondkv.ErrTxnDone) {
		t.Fatalf("Txn used after its function: %v", err)
	}

	// The range a transaction read from is merged away before it commits: the commit goes to
	// the range that holds the keys now, and nothing is applied twice. (A commit that reaches
	// a range no longer holding its keys is refused whole: store's TestTxnOutOfSpan.)
	if err := db.Put(ctx, []byte("p"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	runs := 0
	err := db.Update(ctx, func(tx *bondkv.Txn) error {
		runs++
		v, err := tx.Get([]byte("p"))
		if err != nil {
			return err
		}
		if runs == 1 {
			if err := db.Inspect().Merge(ctx, []byte("m")); err != nil {
				return fmt.Errorf("merge: %w", err)
			}
		}
		n, _ := strconv.Atoi(string(v))
		if err := tx.Put([]byte("a"), []byte("left")); err != nil {
			return err
		}
		return tx.Put([]byte("p"), []byte(strconv.Itoa(n+1)))
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, db, "p"); got != "2" {
		t.Fatalf("p = %s after one increment (%d runs), want 2", got, runs)
	}
	if got := mustGet(t, db, "a"); got != "left" {
		t.Fatalf("a = %s", got)
	}

	// A closed DB.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Update(ctx, func(tx *bondkv.Txn) error { return tx.Put([]byte("k"), []byte("v")) }); !errors.Is(err, bondkv.ErrClosed) {
		t.Fatalf("Update after Close: %v", err)
	}
	if err := db.View(ctx, func(tx *bondkv.Txn) error { return nil }); !errors.Is(err, bondkv.ErrClosed) {
		t.Fatalf("View after Close: %v", err)
	}
}

// TestTxnCancel: transactions across two ranges whose context ends at random points of their
// commit either apply whole or not at all, and leave no intent once their records have
// expired.
func TestTxnCancel(t *testing.T) {
	db := openT(t, t.TempDir(), &bondkv.Options{Expert: fastExpert, Txn: bondkv.TxnOptions{RecordTTL: 300 * time.Millisecond}})
	ctx := context.Background()
	if err := db.Split(ctx, []byte("m")); err != nil {
		t.Fatal(err)
	}
	outcomes := map[string]int{}
	for i := 0; i < 40; i++ {
		cctx, cancel := context.WithCancel(ctx) // every eighth commits
		if i%8 != 7 {
			cancel()
			cctx, cancel = context.WithTimeout(ctx, time.Duration(i%8)*500*time.Microsecond)
		}
		err := db.Update(cctx, func(tx *bondkv.Txn) error {
			if err := tx.Put([]byte(fmt.Sprintf("a%02d", i)), []byte("x")); err != nil {
				return err
			}
			return tx.Put([]byte(fmt.Sprintf("z%02d", i)), []byte("x"))
		})
		cancel()
		switch {
		case err == nil:
			outcomes["committed"]++
		case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, bondkv.ErrAmbiguous):
			outcomes["ended"]++
		default:
			t.Fatalf("transaction %d: %v", i, err)
		}
	}
	time.Sleep(400 * time.Millisecond) // past every record's expiry
	if _, pending, err := db.Inspect().ResolveIntents(ctx); err != nil || pending != 0 {
		t.Fatalf("resolve: %d pending, %v", pending, err)
	}
	if n, err := db.Inspect().IntentCount(); err != nil || n != 0 {
		t.Fatalf("%d intents left, %v", n, err)
	}
	for i := 0; i < 40; i++ {
		a, z := mustGet(t, db, fmt.Sprintf("a%02d", i)), mustGet(t, db, fmt.Sprintf("z%02d", i))
		if a != z {
			t.Fatalf("transaction %d applied in part: a=%s z=%s", i, a, z)
		}
	}
	t.Logf("outcomes %v", outcomes)
	if outcomes["ended"] == 0 || outcomes["committed"] == 0 {
		t.Fatalf("want both outcomes, got %v", outcomes)
	}
}

// TestTxnScanAcrossRangesRefused: a read-write transaction across ranges that scanned in more
// than one of them gets a typed error and applies nothing; scanning in one of them works.
func TestTxnScanAcrossRangesRefused(t *testing.T) {
	db := openTxnDB(t, "m")
	ctx := context.Background()
	err := db.Update(ctx, func(tx *bondkv.Txn) error {
		if _, err := tx.Scan([]byte("a"), []byte("z"), 0); err != nil {
			return err
		}
		if err := tx.Put([]byte("b"), []byte("1")); err != nil {
			return err
		}
		return tx.Put([]byte("y"), []byte("1"))
	})
	if !errors.Is(err, bondkv.ErrScanAcrossRanges) {
		t.Fatalf("scan over two ranges, writes in both: %v", err)
	}
	if got := mustGet(t, db, "b"); got != "<none>" {
		t.Fatalf("b = %s after a refused transaction", got)
	}
	// One range scanned (the other only written): fine, and the scan's range holds the record.
	if err := db.Update(ctx, func(tx *bondkv.Txn) error {
		kvs, err := tx.Scan([]byte("n"), []byte("z"), 0)
		if err != nil {
			return err
		}
		if err := tx.Put([]byte("b"), []byte(fmt.Sprint(len(kvs)))); err != nil {
			return err
		}
		return tx.Put([]byte("y"), []byte("1"))
	}); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, db, "b"); got != "0" {
		t.Fatalf("b = %s", got)
	}
}
