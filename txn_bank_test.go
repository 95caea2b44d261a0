package bondkv_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bondkv/bondkv"
	"github.com/bondkv/bondkv/internal/testcluster"
)

const (
	bankAccounts = 16
	bankInitial  = 1000
)

func account(i int) []byte { return []byte(fmt.Sprintf("acct-%02d", i)) }

// transfer is one attempted transfer; its marker key is written in the same transaction.
type transfer struct {
	marker   string
	from, to int
	amount   int
	outcome  string // "acked", "unknown", "failed"
	err      error
}

// TestBank runs random transfers between 16 accounts in 8 ranges on 3 nodes for a fixed time,
// while a node is killed and restarted and coordinators "crash" right after preparing. Then:
// the total is unchanged (checked continuously by read-only transactions, too), every transfer
// applied fully or not at all (the balances equal the initial ones plus exactly the transfers
// whose marker exists, and every acknowledged transfer has its marker), and no intent is left
// once recovery has run.
func TestBank(t *testing.T) {
	seed := testSeed(t)
	var crashes, prepares atomic.Int64
	var crashing atomic.Bool // on once the accounts exist
	c := testcluster.New(t, testcluster.Config{
		Nodes: 3, Expert: clusterExpert,
		Txn: bondkv.TxnOptions{RecordTTL: time.Second},
		OnOpen: func(i int, db *bondkv.DB) {
			bondkv.SetCrashAfterPrepare(db, func() bool { // every 8th prepared transaction
				if crashing.Load() && prepares.Add(1)%8 == 0 {
					crashes.Add(1)
					return true
				}
				return false
			})
		},
	})
	ctx := context.Background()
	db0 := c.Node(0)
	for i := 2; i < bankAccounts; i += 2 { // 8 ranges of two accounts each
		if err := db0.Split(ctx, account(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := db0.Update(ctx, func(tx *bondkv.Txn) error {
		for i := 0; i < bankAccounts; i++ {
			if err := tx.Put(account(i), []byte(strconv.Itoa(bankInitial))); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	crashing.Store(true)
	var (
		mu        sync.Mutex
		transfers []*transfer
		views     atomic.Int64
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	failures := make(chan error, 16)
	live := func(r *rand.Rand) *bondkv.DB {
		for {
			l := c.Live()
			if db := c.Node(l[r.IntN(len(l))]); db != nil {
				return db
			}
		}
	}
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, uint64(w)))
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				x := &transfer{marker: fmt.Sprintf("xfer-%d-%05d", w, n), from: r.IntN(bankAccounts), amount: 1 + r.IntN(50)}
				x.to = (x.from + 1 + r.IntN(bankAccounts-1)) % bankAccounts
				tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				done := false
				err := live(r).Update(tctx, func(tx *bondkv.Txn) error {
					done = false
					fv, err := tx.Get(account(x.from))
					if err != nil {
						return err
					}
					tv, err := tx.Get(account(x.to))
					if err != nil {
						return err
					}
					f, _ := strconv.Atoi(string(fv))
					g, _ := strconv.Atoi(string(tv))
					if f < x.amount {
						return nil // insufficient funds: nothing to do
					}
					done = true
					if err := tx.Put(account(x.from), []byte(strconv.Itoa(f-x.amount))); err != nil {
						return err
					}
					if err := tx.Put(account(x.to), []byte(strconv.Itoa(g+x.amount))); err != nil {
						return err
					}
					return tx.Put([]byte(x.marker), []byte(fmt.Sprintf("%d,%d,%d", x.from, x.to, x.amount)))
				})
				cancel()
				switch {
				case err == nil && done:
					x.outcome = "acked"
				case err == nil:
					continue
				case errors.Is(err, bondkv.ErrAmbiguous), errors.Is(err, context.DeadlineExceeded):
					x.outcome = "unknown"
				default:
					x.outcome = "failed" // e.g. the node was closed under it: outcome unknown too
				}
				x.err = err
				mu.Lock()
				transfers = append(transfers, x)
				mu.Unlock()
			}
		}()
	}
	wg.Add(1)
	go func() { // the total never changes, seen by read-only transactions over all 8 ranges
		defer wg.Done()
		r := rand.New(rand.NewPCG(seed, 99))
		for {
			select {
			case <-stop:
				return
			default:
			}
			vctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			total := 0
			err := live(r).View(vctx, func(tx *bondkv.Txn) error {
				total = 0
				for i := 0; i < bankAccounts; i++ {
					v, err := tx.Get(account(i))
					if err != nil {
						return err
					}
					n, _ := strconv.Atoi(string(v))
					total += n
				}
				return nil
			})
			cancel()
			if err == nil {
				views.Add(1)
				if total != bankAccounts*bankInitial {
					failures <- fmt.Errorf("a read-only transaction saw a total of %d", total)
					return
				}
			}
		}
	}()
	t.Cleanup(func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	})

	victim := 1
	time.Sleep(2 * time.Second)
	if err := c.Kill(victim); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	if err := c.Restart(victim); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	close(stop)
	wg.Wait()
	close(failures)
	for err := range failures {
		t.Fatal(err)
	}

	// Recovery: after the records' expiry every node's sweep resolves what crashed
	// coordinators left; run it now on every node until nothing is pending.
	deadline := time.Now().Add(30 * time.Second)
	for {
		time.Sleep(1100 * time.Millisecond)
		pending := 0
		for _, i := range c.Live() {
			_, p, err := c.Node(i).Inspect().ResolveIntents(ctx)
			if err != nil {
				t.Logf("resolve on node %d: %v", i+1, err)
				pending++
			}
			pending += p
		}
		left := 0
		for _, i := range c.Live() {
			n, err := c.Node(i).Inspect().IntentCount()
			if err != nil {
				t.Fatal(err)
			}
			left += n
		}
		if pending == 0 && left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d intents left on the nodes after recovery (%d pending)", left, pending)
		}
	}

	balances := make([]int, bankAccounts)
	for i := range balances {
		v, err := db0.Get(ctx, account(i))
		if err != nil {
			t.Fatal(err)
		}
		balances[i], _ = strconv.Atoi(string(v))
	}
	markers, err := db0.Scan(ctx, []byte("xfer-"), []byte("xfer."), 0)
	if err != nil {
		t.Fatal(err)
	}
	applied := map[string]bool{}
	expect := make([]int, bankAccounts)
	for i := range expect {
		expect[i] = bankInitial
	}
	for _, kv := range markers {
		applied[string(kv.Key)] = true
		parts := strings.Split(string(kv.Value), ",")
		from, _ := strconv.Atoi(parts[0])
		to, _ := strconv.Atoi(parts[1])
		amount, _ := strconv.Atoi(parts[2])
		expect[from] -= amount
		expect[to] += amount
	}
	total := 0
	for i := range balances {
		total += balances[i]
		if balances[i] != expect[i] {
			t.Errorf("account %d: balance %d, but the applied transfers give %d", i, balances[i], expect[i])
		}
	}
	if total != bankAccounts*bankInitial {
		t.Errorf("total %d, want %d", total, bankAccounts*bankInitial)
	}
	counts := map[string]int{}
	for _, x := range transfers {
		counts[x.outcome]++
		if x.outcome == "failed" {
			t.Logf("transfer %s failed: %v (applied: %v)", x.marker, x.err, applied[x.marker])
		}
		if x.outcome == "acked" && !applied[x.marker] {
			t.Errorf("acknowledged transfer %s is missing", x.marker)
		}
	}
	st := bondkv.TxnStats{}
	for _, i := range c.Live() {
		s := c.Node(i).Inspect().TxnStats()
		st.Commits1PC += s.Commits1PC
		st.Commits2PC += s.Commits2PC
		st.Conflicts += s.Conflicts
		st.Resolved += s.Resolved
	}
	t.Logf("transfers %v, %d applied, %d coordinator crashes, %d consistent views; stats %+v",
		counts, len(markers), crashes.Load(), views.Load(), st)
	if counts["acked"] < 20 || crashes.Load() == 0 {
		t.Fatalf("too little happened to show anything: %v acked, %d crashes", counts["acked"], crashes.Load())
	}
}
