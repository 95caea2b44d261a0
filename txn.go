package bondkv

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bondkv/bondkv/internal/base"
	"github.com/bondkv/bondkv/shard"
	"github.com/bondkv/bondkv/store"
)

// Transaction errors.
var (
	// ErrConflict: a transaction kept conflicting with others until its retries or its context
	// ran out. Nothing of it was applied.
	ErrConflict = errors.New("bondkv: transaction conflict")
	// ErrTxnTooLarge: a transaction holds more keys or bytes than TxnOptions allow. Nothing of
	// it was applied.
	ErrTxnTooLarge = errors.New("bondkv: transaction too large")
	// ErrReadOnly: a write inside View.
	ErrReadOnly = errors.New("bondkv: write in a read-only transaction")
	// ErrTxnDone: the Txn was used after its function returned.
	ErrTxnDone = errors.New("bondkv: transaction already finished")
	// ErrScanAcrossRanges: a read-write transaction over several ranges scanned in more than
	// one of them (its commit could not re-check all its scans at the commit point). Nothing
	// was applied. Scan within one range, or split the work.
	ErrScanAcrossRanges = errors.New("bondkv: a read-write transaction across ranges scanned in several ranges")
)

// TxnOptions bound transactions.
type TxnOptions struct {
	// RecordTTL is how long a distributed transaction's record stays pending before others may
	// abort it (a coordinator that crashed after preparing blocks its keys at most this long).
	// Default 5 s.
	RecordTTL time.Duration
	// MaxKeys bounds the keys one transaction reads and writes. Default 10,000.
	MaxKeys int
	// MaxBytes bounds the bytes of keys and values one transaction writes. Default 16 MiB.
	MaxBytes int
	// MaxAttempts bounds how often Update runs its function on conflicts (0: until the
	// context ends).
	MaxAttempts int
}

const (
	defaultRecordTTL = 5 * time.Second
	defaultMaxKeys   = 10_000
	defaultMaxBytes  = 16 << 20
)

func (o TxnOptions) withDefaults() TxnOptions {
	if o.RecordTTL <= 0 {
		o.RecordTTL = defaultRecordTTL
	}
	if o.MaxKeys <= 0 {
		o.MaxKeys = defaultMaxKeys
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = defaultMaxBytes
	}
	return o
}

// TxnStats counts this node's transactions by outcome and commit path.
type TxnStats struct {
	// Commits by path: one-phase (every key in one range), two-phase (several ranges), and
	// read-only (validated without a write).
	Commits1PC, Commits2PC, CommitsReadOnly uint64
	// Conflicts counts attempts that ended in a conflict and were retried (or given up).
	Conflicts uint64
	// Aborted counts transactions whose function returned an error or whose retries ran out.
	Aborted uint64
	// Resolved counts other transactions' intents this node resolved (found committed, aborted
	// or expired).
	Resolved uint64
}

type txnCounters struct {
	c1, c2, cro, conflicts, aborted, resolved atomic.Uint64
	// resolving tracks the background work (resolutions after two-phase commits, aborts, the
	// sweep); spawn adds to it only while the DB is not closing.
	resolving sync.WaitGroup
	spawnMu   sync.Mutex
	closing   bool
	stop      context.Context
	cancel    context.CancelFunc
	// crashAfterPrepare, when set (tests), makes a coordinator stop right after its prepares,
	// as if its process died: it neither commits nor cleans up.
	crashAfterPrepare atomic.Pointer[func() bool]
}

// spawn runs f in the background unless the DB is closing (then the work is left to record
// expiry and to the other nodes).
func (t *txnCounters) spawn(f func()) {
	t.spawnMu.Lock()
	defer t.spawnMu.Unlock()
	if t.closing {
		return
	}
	t.resolving.Add(1)
	go func() {
		defer t.resolving.Done()
		f()
	}()
}

// shutdown stops the background work and waits for it.
func (t *txnCounters) shutdown() {
	t.spawnMu.Lock()
	t.closing = true
	t.spawnMu.Unlock()
	if t.cancel != nil {
		t.cancel()
	}
	t.resolving.Wait()
}

func (t *txnCounters) stats() TxnStats {
	return TxnStats{Commits1PC: t.c1.Load(), Commits2PC: t.c2.Load(), CommitsReadOnly: t.cro.Load(),
		Conflicts: t.conflicts.Load(), Aborted: t.aborted.Load(), Resolved: t.resolved.Load()}
}

// Txn is a transaction: reads see a consistent state, writes are buffered until commit. A Txn
// is used by one goroutine, only inside the function given to Update or View.
type Txn struct {
	db       *DB
	ctx      context.Context
	readOnly bool
	id       store.TxnID
	done     bool
	// local: reads are served by the nearest replica as it is, without a consensus round; the
	// commit's checks catch a replica that was behind. Only a read-write transaction's first
	// attempt reads so: a read-only one, and any attempt after a conflict, read linearizably.
	local bool

	reads  map[string]uint64 // key → version read (0: no record)
	scans  []shard.ScanPart
	writes map[string]*store.TxnWrite
	bytes  int
}

// conflictError is an attempt's conflict: the transaction is retried.
type conflictError struct{ reason string }

func (e *conflictError) Error() string { return "bondkv: conflict: " + e.reason }
func (e *conflictError) Unwrap() error { return ErrConflict }

// Update runs fn in a read-write transaction and commits it. On a conflict with another
// transaction it runs fn again (after a short randomized pause), so fn may run more than once
// and must not have effects outside the transaction. If fn returns an error, nothing is
// applied and Update returns it — once it has checked that what fn read was one consistent
// state (otherwise fn may have failed because of that, and it runs again). The transaction is
// strictly serializable. Reads on the first attempt come from the nearest replica without a
// consensus round; the commit checks them.
//
// If the commit's outcome cannot be known (the context ended or a node failed mid-commit),
// Update returns an error matching ErrAmbiguous.
func (db *DB) Update(ctx context.Context, fn func(tx *Txn) error) error {
	return db.runTxn(ctx, false, fn)
}

// View runs fn in a read-only transaction: every read is validated at the end, so what fn saw
// is one consistent state even across ranges. Like Update it may run fn more than once.
func (db *DB) View(ctx context.Context, fn func(tx *Txn) error) error {
	return db.runTxn(ctx, true, fn)
}

func (db *DB) runTxn(ctx context.Context, readOnly bool, fn func(tx *Txn) error) error {
	if err := db.checkOpen(); err != nil {
		return err
	}
	opts := db.opts.Txn
	backoff := time.Millisecond
	for attempt := 1; ; attempt++ {
		tx := &Txn{db: db, ctx: ctx, readOnly: readOnly, local: !readOnly && attempt == 1,
			reads: map[string]uint64{}, writes: map[string]*store.TxnWrite{}}
		if _, err := rand.Read(tx.id[:]); err != nil {
			return fmt.Errorf("bondkv: transaction id: %w", err)
		}
		err := fn(tx)
		if err == nil {
			err = tx.commit()
		} else if !errors.Is(err, ErrConflict) && (len(tx.reads)+len(tx.scans) > 1 || tx.local && len(tx.reads)+len(tx.scans) > 0) {
			// fn may have failed because its reads were not consistent with each other (a
			// read from before and one from after another transaction): then it runs again.
			// Its error is returned only if what it read was one consistent state.
			if verr := tx.validateReadOnly(); errors.Is(verr, ErrConflict) {
				err = verr
			}
		}
		tx.done = true
		if err == nil {
			return nil
		}
		if !errors.Is(err, ErrConflict) {
			db.txn.aborted.Add(1)
			return err
		}
		db.txn.conflicts.Add(1)
		if opts.MaxAttempts > 0 && attempt >= opts.MaxAttempts {
			db.txn.aborted.Add(1)
			return fmt.Errorf("bondkv: gave up after %d attempts: %w", attempt, err)
		}
		if cerr := db.checkOpen(); cerr != nil {
			return cerr
		}
		wait := backoff/2 + time.Duration(mrand.Int64N(int64(backoff)))
		if backoff < 50*time.Millisecond {
			backoff *= 2
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			db.txn.aborted.Add(1)
			return fmt.Errorf("bondkv: transaction: %w (last attempt: %w)", ctx.Err(), err)
		case <-t.C:
		}
	}
}

func (tx *Txn) check() error {
	if tx.done {
		return ErrTxnDone
	}
	return tx.db.checkOpen()
}

func (tx *Txn) keys() int { return len(tx.reads) + len(tx.writes) }

// Get returns key's value as of the transaction (its own writes included), or ErrNotFound.
func (tx *Txn) Get(key []byte) ([]byte, error) {
	if err := tx.check(); err != nil {
		return nil, err
	}
	if err := base.CheckKey(key); err != nil {
		return nil, err
	}
	if w, ok := tx.writes[string(key)]; ok {
		if w.Delete {
			return nil, ErrNotFound
		}
		return bytes.Clone(w.Value), nil
	}
	// A transaction waits for a pending writer of the key to end (usually milliseconds):
	// reading past it would most likely only lead to a conflict at commit.
	v, err := tx.db.txnGet(tx.ctx, key, tx.id, true, tx.local)
	if err != nil {
		return nil, err
	}
	if err := tx.noteRead(key, v.Version); err != nil {
		return nil, err
	}
	if !v.Live {
		return nil, ErrNotFound
	}
	return v.Value, nil
}

func (tx *Txn) noteRead(key []byte, version uint64) error {
	if prev, ok := tx.reads[string(key)]; ok {
		if prev != version {
			return &conflictError{reason: fmt.Sprintf("key %q changed during the transaction", key)}
		}
		return nil
	}
	if tx.keys() >= tx.db.opts.Txn.MaxKeys {
		return fmt.Errorf("%w: more than %d keys", ErrTxnTooLarge, tx.db.opts.Txn.MaxKeys)
	}
	tx.reads[string(key)] = version
	return nil
}

// Put buffers a write of value to key.
func (tx *Txn) Put(key, value []byte) error {
	if err := base.CheckValue(value); err != nil {
		return err
	}
	return tx.write(key, value, false)
}

// Delete buffers a deletion of key.
func (tx *Txn) Delete(key []byte) error { return tx.write(key, nil, true) }

func (tx *Txn) write(key, value []byte, del bool) error {
	if err := tx.check(); err != nil {
		return err
	}
	if tx.readOnly {
		return ErrReadOnly
	}
	if err := base.CheckKey(key); err != nil {
		return err
	}
	old, ok := tx.writes[string(key)]
	if !ok && tx.keys() >= tx.db.opts.Txn.MaxKeys {
		return fmt.Errorf("%w: more than %d keys", ErrTxnTooLarge, tx.db.opts.Txn.MaxKeys)
	}
	n := tx.bytes + len(key) + len(value)
	if ok {
		n -= len(key) + len(old.Value)
	}
	if n > tx.db.opts.Txn.MaxBytes {
		return fmt.Errorf("%w: more than %d bytes written", ErrTxnTooLarge, tx.db.opts.Txn.MaxBytes)
	}
	tx.bytes = n
	tx.writes[string(key)] = &store.TxnWrite{Key: bytes.Clone(key), Value: bytes.Clone(value), Delete: del}
	return nil
}

// Scan returns up to limit (<= 0: all) keys of [start, end) with their values as of the
// transaction (its own writes included). A nil end means the end of the keyspace.
func (tx *Txn) Scan(start, end []byte, limit int) ([]KV, error) {
	if err := tx.check(); err != nil {
		return nil, err
	}
	span := base.Span{Start: start, End: end}
	if !span.Valid() {
		return nil, fmt.Errorf("%w: end %q is not after start %q", ErrInvalidRange, end, start)
	}
	if len(start) > MaxKeySize || len(end) > MaxKeySize {
		return nil, fmt.Errorf("%w: scan bound over %d bytes", ErrKeyTooLarge, MaxKeySize)
	}
	// Own writes in the span change which keys count against the limit: read the whole span.
	readLimit := limit
	for k := range tx.writes {
		if span.Contains([]byte(k)) {
			readLimit = 0
			break
		}
	}
	parts, err := tx.db.txnScan(tx.ctx, span, readLimit, tx.id, tx.local)
	if err != nil {
		return nil, err
	}
	merged := map[string][]byte{}
	for _, p := range parts {
		for _, kv := range p.KVs {
			merged[string(kv.Key)] = kv.Value.Data
		}
	}
	for k, w := range tx.writes {
		if !span.Contains([]byte(k)) {
			continue
		}
		if w.Delete {
			delete(merged, k)
		} else {
			merged[k] = w.Value
		}
	}
	tx.scans = append(tx.scans, parts...)
	keys := make([]string, 0, len(merged))
	for k := range merged {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if limit > 0 && len(keys) > limit {
		keys = keys[:limit]
	}
	out := make([]KV, len(keys))
	for i, k := range keys {
		out[i] = KV{Key: []byte(k), Value: bytes.Clone(merged[k])}
	}
	return out, nil
}

// txnGet reads key linearizably as a transaction (self: its own intents do not count): an
// intent of a transaction that committed is resolved first, so the read sees its write; a
// pending one is read past (the reader is ordered before it, and a commit that would break that
// fails its checks).
func (db *DB) txnGet(ctx context.Context, key []byte, self store.TxnID, wait, local bool) (shard.TxnValue, error) {
	for {
		v, err := db.node.TxnGet(ctx, key, local)
		if err != nil {
			return shard.TxnValue{}, fmt.Errorf("bondkv: get: %w", err)
		}
		if v.Intent == nil || v.Intent.Txn == self || v.Intent.Kind == store.IntentLock {
			return v, nil
		}
		done, err := db.resolveIntent(ctx, key, *v.Intent, wait)
		if errors.Is(err, ErrAmbiguous) && ctx.Err() == nil {
			// A resolution whose outcome is unknown: read again, after a pause.
			if err := base.Sleep(ctx, 10*time.Millisecond); err != nil {
				return shard.TxnValue{}, err
			}
			continue
		}
		if err != nil {
			return shard.TxnValue{}, err
		}
		if !done {
			return v, nil // pending: read the committed value
		}
	}
}

// txnScan scans span as a transaction, resolving the intents of ended transactions it meets.
func (db *DB) txnScan(ctx context.Context, span base.Span, limit int, self store.TxnID, local bool) ([]shard.ScanPart, error) {
	for {
		parts, err := db.node.TxnScan(ctx, span, limit, local)
		if err != nil {
			return nil, fmt.Errorf("bondkv: scan: %w", err)
		}
		again := false
		for _, p := range parts {
			for _, ki := range p.Intents {
				if ki.Intent.Txn == self || ki.Intent.Kind == store.IntentLock {
					continue
				}
				done, err := db.resolveIntent(ctx, ki.Key, ki.Intent, false)
				if errors.Is(err, ErrAmbiguous) && ctx.Err() == nil {
					// A resolution whose outcome is unknown: scan again, after a pause.
					if err := base.Sleep(ctx, 10*time.Millisecond); err != nil {
						return nil, err
					}
					again = true
					continue
				}
				if err != nil {
					return nil, err
				}
				again = again || done
			}
		}
		if !again {
			return parts, nil
		}
	}
}

// commit validates and applies the transaction.
func (tx *Txn) commit() error {
	if len(tx.writes) == 0 {
		if err := tx.validateReadOnly(); err != nil {
			return err
		}
		tx.db.txn.cro.Add(1)
		return nil
	}
	groups, err := tx.group()
	if err != nil {
		return err
	}
	if len(groups) == 1 {
		return tx.commit1PC(groups[0])
	}
	return tx.commit2PC(groups)
}

// rangeGroup is a transaction's part in one range.
type rangeGroup struct {
	desc *shard.Descriptor
	args store.TxnArgs
}

// group assigns every read, scan and write to the range holding it (scans were read range by
// range already).
func (tx *Txn) group() ([]*rangeGroup, error) {
	byRange := map[base.RangeID]*rangeGroup{}
	var order []base.RangeID
	get := func(key []byte) (*rangeGroup, error) {
		d, err := tx.db.node.Locate(tx.ctx, key, false)
		if err != nil {
			return nil, fmt.Errorf("bondkv: commit: %w", err)
		}
		g := byRange[d.RangeID]
		if g == nil {
			g = &rangeGroup{desc: d, args: store.TxnArgs{Txn: tx.id}}
			byRange[d.RangeID] = g
			order = append(order, d.RangeID)
		}
		return g, nil
	}
	for _, k := range sortedKeys(tx.reads) {
		g, err := get([]byte(k))
		if err != nil {
			return nil, err
		}
		g.args.Reads = append(g.args.Reads, store.TxnRead{Key: []byte(k), Version: tx.reads[k]})
	}
	for _, p := range tx.scans {
		g, err := get(p.Span.Start)
		if err != nil {
			return nil, err
		}
		if g.desc.RangeID != p.Range || !(base.Span{Start: g.desc.Start, End: g.desc.End}).Covers(p.Span) {
			return nil, &conflictError{reason: "a scanned range split or merged"}
		}
		g.args.Scans = append(g.args.Scans, store.TxnScan{Span: p.Span, Limit: p.Limit, Digest: store.ScanDigest(p.KVs)})
	}
	for _, k := range sortedKeys(tx.writes) {
		g, err := get([]byte(k))
		if err != nil {
			return nil, err
		}
		g.args.Writes = append(g.args.Writes, *tx.writes[k])
	}
	out := make([]*rangeGroup, 0, len(order))
	for _, id := range order {
		out = append(out, byRange[id])
	}
	return out, nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// commit1PC commits a transaction whose keys lie in one range with one proposal.
func (tx *Txn) commit1PC(g *rangeGroup) error {
	err := tx.db.node.ProposeTo(tx.ctx, g.desc.RangeID, []store.Command{store.TxnCommand(store.OpTxnCommit, g.args)})
	if err == nil {
		tx.db.txn.c1.Add(1)
		return nil
	}
	return tx.db.commitFailed(tx.ctx, err)
}

// commitFailed maps the failure of a commit step: conflicts and moved ranges are retried (after
// resolving the intent met, if any); anything else is returned.
func (db *DB) commitFailed(ctx context.Context, err error) error {
	var cf *shard.ConflictError
	if errors.As(err, &cf) {
		c := cf.Conflict
		if !c.Txn.IsZero() {
			in := store.Intent{Txn: c.Txn, Anchor: c.Anchor}
			if _, rerr := db.resolveIntent(ctx, c.Key, in, true); rerr != nil && ctx.Err() != nil {
				return rerr
			}
		}
		return &conflictError{reason: c.String()}
	}
	if errors.Is(err, ErrRangeMoved) {
		return &conflictError{reason: "a range moved: " + err.Error()}
	}
	return fmt.Errorf("bondkv: commit: %w", err)
}

// validateReadOnly checks that nothing a read-only transaction read has changed, and that no
// transaction holds a key it read for writing: its reads were then all current at the moment
// its last read ended. One read needs no check (it was linearizable).
func (tx *Txn) validateReadOnly() error {
	if len(tx.reads)+len(tx.scans) <= 1 && len(tx.scans) == 0 && !tx.local {
		return nil // one linearizable read
	}
	for _, k := range sortedKeys(tx.reads) {
		v, err := tx.db.node.TxnGet(tx.ctx, []byte(k), false)
		if err != nil {
			return fmt.Errorf("bondkv: validate: %w", err)
		}
		if v.Version != tx.reads[k] {
			return &conflictError{reason: fmt.Sprintf("key %q changed", k)}
		}
		if v.Intent != nil && v.Intent.Txn != tx.id && v.Intent.Kind != store.IntentLock {
			return tx.db.commitFailed(tx.ctx, &shard.ConflictError{Conflict: store.Conflict{Key: []byte(k), Txn: v.Intent.Txn, Anchor: v.Intent.Anchor, Reason: "held by a transaction"}})
		}
	}
	for _, p := range tx.scans {
		again, err := tx.db.node.TxnScan(tx.ctx, p.Span, p.Limit, false)
		if err != nil {
			return fmt.Errorf("bondkv: validate: %w", err)
		}
		var kvs []store.KV
		for _, q := range again {
			kvs = append(kvs, q.KVs...)
			for _, ki := range q.Intents {
				if ki.Intent.Kind != store.IntentLock {
					return tx.db.commitFailed(tx.ctx, &shard.ConflictError{Conflict: store.Conflict{Key: ki.Key, Txn: ki.Intent.Txn, Anchor: ki.Intent.Anchor, Reason: "held by a transaction"}})
				}
			}
		}
		if store.ScanDigest(kvs) != store.ScanDigest(p.KVs) {
			return &conflictError{reason: fmt.Sprintf("scan of %s changed", p.Span)}
		}
	}
	return nil
}

// commit2PC commits a transaction over several ranges:
//
//  1. prepare the range holding the anchor (the first written key), laying the transaction's
//     record (pending, with an expiry) on the anchor's intent together with that range's part;
//  2. prepare every other range in parallel (checks, intents, locks);
//  3. flip the record to committed: the commit point, one proposal;
//  4. resolve the intents in the background, the anchor's last.
//
// Any failure before 3 aborts: the record is flipped to aborted and the intents removed.
func (tx *Txn) commit2PC(groups []*rangeGroup) error {
	db := tx.db
	for _, g := range groups {
		for _, r := range g.args.Reads {
			if _, w := tx.writes[string(r.Key)]; !w {
				g.args.Locks = append(g.args.Locks, r.Key)
			}
		}
	}
	// The anchor is the first written key, or, if the transaction scanned, a key of the one
	// range it scanned in: the commit point re-checks that range's scans, so nothing can be
	// inserted into them between their prepare and the commit.
	first := groups[0]
	var anchor []byte
	scanned := 0
	for _, g := range groups {
		if len(g.args.Scans) > 0 {
			scanned++
			first = g
		}
	}
	switch {
	case scanned > 1:
		return fmt.Errorf("%w: it scanned in %d ranges", ErrScanAcrossRanges, scanned)
	case scanned == 1 && len(first.args.Writes) > 0:
		anchor = first.args.Writes[0].Key
	case scanned == 1 && len(first.args.Locks) > 0:
		anchor = first.args.Locks[0]
	case scanned == 1:
		// Nothing else of the transaction in that range: the record goes on a lock of the
		// scan's first key.
		sc := first.args.Scans[0].Span
		anchor = sc.Start
		for _, p := range tx.scans {
			if p.Range == first.desc.RangeID && len(p.KVs) > 0 {
				anchor = p.KVs[0].Key
				break
			}
		}
		if len(anchor) == 0 {
			anchor = []byte{0}
		}
		first.args.Locks = append(first.args.Locks, anchor)
	default:
		anchor = []byte(sortedKeys(tx.writes)[0])
		for _, g := range groups {
			if containsWrite(g.args.Writes, anchor) {
				first = g
			}
		}
	}
	var participants [][]byte
	var rest []*rangeGroup
	for _, g := range groups {
		g.args.Anchor = anchor
		for _, w := range g.args.Writes {
			participants = append(participants, w.Key)
		}
		participants = append(participants, g.args.Locks...)
		if g != first {
			rest = append(rest, g)
		}
	}
	slices.SortFunc(participants, bytes.Compare)
	participants = slices.CompactFunc(participants, bytes.Equal)
	participants = slices.DeleteFunc(participants, func(k []byte) bool { return bytes.Equal(k, anchor) })
	expiry := time.Now().Add(db.opts.Txn.RecordTTL)
	rec := &store.TxnRecord{Status: store.TxnPending, Expiry: expiry.UnixNano(), Participants: participants}
	first.args.Record = rec
	abort := func(cause error) error {
		// Abort in the background, under a context of its own (the caller's may be what
		// ended): the caller returns at once; whoever meets an intent before the abort is done
		// waits for it, and if it fails the record expires.
		db.txn.spawn(func() {
			ctx, cancel := context.WithTimeout(db.txn.stop, db.opts.Txn.RecordTTL)
			defer cancel()
			in := store.Intent{Txn: tx.id, Anchor: anchor}
			if _, err := db.endTxn(ctx, in, store.TxnAborted, rec); err != nil {
				db.opts.Logger.Debug("transaction abort incomplete; its record expires", "txn", tx.id.String(), "err", err)
			}
		})
		return cause
	}
	if err := db.node.ProposeTo(tx.ctx, first.desc.RangeID, []store.Command{store.TxnCommand(store.OpTxnPrepare, first.args)}); err != nil {
		if errors.Is(err, ErrAmbiguous) {
			return abort(fmt.Errorf("bondkv: commit: %w", err))
		}
		return db.commitFailed(tx.ctx, err) // nothing was laid
	}
	errs := make([]error, len(rest))
	var wg sync.WaitGroup
	for i, g := range rest {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = db.node.ProposeTo(tx.ctx, g.desc.RangeID, []store.Command{store.TxnCommand(store.OpTxnPrepare, g.args)})
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			if errors.Is(err, ErrAmbiguous) {
				return abort(fmt.Errorf("bondkv: commit: %w", err))
			}
			// Release this transaction's own intents before waiting for the one met: two
			// transactions preparing crosswise would otherwise wait for each other until
			// their records expire.
			abort(nil)
			return db.commitFailed(tx.ctx, err)
		}
	}
	if f := db.txn.crashAfterPrepare.Load(); f != nil && (*f)() {
		return fmt.Errorf("bondkv: commit: coordinator stopped after prepare (test): %w", ErrAmbiguous)
	}
	if time.Now().After(expiry.Add(-db.opts.Txn.RecordTTL / 10)) {
		return abort(&conflictError{reason: "the transaction record is about to expire"})
	}
	flip := store.TxnArgs{Txn: tx.id, Anchor: anchor, Status: store.TxnCommitted, Scans: first.args.Scans}
	err := db.node.ProposeTo(tx.ctx, first.desc.RangeID, []store.Command{store.TxnCommand(store.OpTxnStatus, flip)})
	if err != nil {
		var cf *shard.ConflictError
		if errors.As(err, &cf) || errors.Is(err, ErrRangeMoved) {
			// Someone aborted the record (it expired), a scan changed, or the anchor's range
			// split or merged since the prepare: nothing was committed. Clean up and retry.
			return abort(&conflictError{reason: err.Error()})
		}
		// Unknown whether the flip applied: learn it from the record.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(tx.ctx), time.Second)
		st, found, serr := db.recordStatus(sctx, anchor, tx.id)
		cancel()
		switch {
		case serr == nil && found && st == store.TxnCommitted:
		case serr == nil && found && st == store.TxnAborted:
			return abort(&conflictError{reason: "the transaction was aborted before its commit"})
		case serr == nil && found:
			// Still pending: the flip may yet land. Abort it (a compare-and-swap against the
			// flip); the outcome stays unknown to the caller.
			return abort(fmt.Errorf("bondkv: commit: %w", ambiguous(err)))
		default:
			// No record (the transaction ended: committed and resolved, or aborted) or no
			// answer: unknown.
			return fmt.Errorf("bondkv: commit: %w", ambiguous(errors.Join(err, serr)))
		}
	}
	db.txn.c2.Add(1)
	db.txn.spawn(func() {
		ctx, cancel := context.WithTimeout(db.txn.stop, time.Minute)
		defer cancel()
		in := store.Intent{Txn: tx.id, Anchor: anchor}
		if _, err := db.endTxn(ctx, in, store.TxnCommitted, rec); err != nil {
			db.opts.Logger.Debug("intent resolution incomplete; readers resolve the rest", "txn", tx.id.String(), "err", err)
		}
	})
	return nil
}

func containsWrite(ws []store.TxnWrite, k []byte) bool {
	return slices.ContainsFunc(ws, func(w store.TxnWrite) bool { return bytes.Equal(w.Key, k) })
}

// recordStatus reads the status of txn's record on anchor; found is false if there is none (the
// transaction ended, and its writes were applied already if it had committed).
func (db *DB) recordStatus(ctx context.Context, anchor []byte, txn store.TxnID) (st store.TxnStatus, found bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err := db.node.TxnGet(ctx, anchor, false)
	if err != nil {
		return 0, false, err
	}
	if v.Intent == nil || v.Intent.Txn != txn || v.Intent.Record == nil {
		return 0, false, nil
	}
	return v.Intent.Record.Status, true, nil
}

// ambiguous makes sure err says the outcome is unknown.
func ambiguous(err error) error {
	if errors.Is(err, ErrAmbiguous) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrAmbiguous, err)
}

// resolveIntent deals with another transaction's intent found on key: it reads the record on
// the intent's anchor and, if the transaction has ended (or its pending record has expired, when
// it aborts it), resolves the intent on key (and, if key is the anchor or full is set, every
// intent of the transaction, the anchor's last). done reports that the intent is gone; false
// means the transaction is still pending (wait is false) or the caller gave up waiting for it
// (wait is true: the caller waits until the record ends or expires).
func (db *DB) resolveIntent(ctx context.Context, key []byte, in store.Intent, wait bool) (bool, error) {
	return db.resolve(ctx, key, in, wait, false)
}

func (db *DB) resolve(ctx context.Context, key []byte, in store.Intent, wait, full bool) (bool, error) {
	// A pending record counts as expired at its expiry on the coordinator's clock, or once this
	// node has seen it pending for a whole RecordTTL (a coordinator whose clock runs ahead
	// cannot hold a key longer than that). Aborting early is safe: the abort is a
	// compare-and-swap against the commit.
	seen := time.Now()
	for pause := time.Millisecond; ; {
		v, err := db.node.TxnGet(ctx, in.Anchor, false)
		if err != nil {
			return false, fmt.Errorf("bondkv: transaction record: %w", err)
		}
		rec := (*store.TxnRecord)(nil)
		if v.Intent != nil && v.Intent.Txn == in.Txn {
			rec = v.Intent.Record
		}
		if rec == nil {
			// The record is gone (removed after every other intent) or was never laid (its
			// transaction then never commits): this intent is a leftover.
			err := db.resolveKeys(ctx, in.Txn, store.TxnAborted, [][]byte{key})
			return err == nil, err
		}
		status := rec.Status
		if status == store.TxnPending && time.Now().UnixNano() < rec.Expiry && time.Since(seen) < db.opts.Txn.RecordTTL {
			if !wait {
				return false, nil
			}
			if err := base.Sleep(ctx, pause); err != nil {
				return false, err
			}
			if pause < 8*time.Millisecond {
				pause *= 2
			}
			continue
		}
		anchorIn := store.Intent{Txn: in.Txn, Anchor: in.Anchor}
		if status == store.TxnPending || full || bytes.Equal(key, in.Anchor) {
			// An expired record is aborted first; the anchor goes last, after everything else.
			if _, err := db.endTxn(ctx, anchorIn, status, rec); err != nil {
				return false, err
			}
			return true, nil
		}
		// Ended: this key alone, at once; the coordinator (or a sweep) does the rest.
		if err := db.resolveKeys(ctx, in.Txn, status, [][]byte{key}); err != nil {
			return false, err
		}
		db.txn.resolved.Add(1)
		return true, nil
	}
}

// endTxn brings transaction in.Txn (record on in.Anchor) to status (committed: its record was
// flipped already; aborted: flips a pending record), then resolves every participant's intent
// and, last, the anchor's. It returns the status the transaction ended with.
func (db *DB) endTxn(ctx context.Context, in store.Intent, status store.TxnStatus, rec *store.TxnRecord) (store.TxnStatus, error) {
	if status != store.TxnCommitted {
		status = store.TxnAborted
		flip := store.TxnArgs{Txn: in.Txn, Anchor: in.Anchor, Status: store.TxnAborted}
		err := db.node.Write(ctx, in.Anchor, []store.Command{store.TxnCommand(store.OpTxnStatus, flip)})
		var cf *shard.ConflictError
		switch {
		case errors.As(err, &cf):
			// Not pending any more: committed meanwhile, or already gone (then its intents
			// are leftovers: removing them is right either way). Read which.
			st, found, rerr := db.recordStatus(ctx, in.Anchor, in.Txn)
			if rerr != nil {
				return 0, rerr
			}
			if found {
				status = st
			}
		case err != nil:
			return 0, err
		}
	}
	var keys [][]byte
	if rec != nil {
		keys = rec.Participants
	}
	if err := db.resolveKeys(ctx, in.Txn, status, keys); err != nil {
		return 0, err
	}
	if err := db.resolveKeys(ctx, in.Txn, status, [][]byte{in.Anchor}); err != nil {
		return 0, err
	}
	db.txn.resolved.Add(1)
	return status, nil
}

// resolveKeys resolves txn's intents on keys, one proposal per range, regrouping after splits
// and merges.
func (db *DB) resolveKeys(ctx context.Context, txn store.TxnID, status store.TxnStatus, keys [][]byte) error {
	left := keys
	for attempt := 0; len(left) > 0; attempt++ {
		byRange := map[base.RangeID][][]byte{}
		for _, k := range left {
			d, err := db.node.Locate(ctx, k, attempt > 0)
			if err != nil {
				return err
			}
			byRange[d.RangeID] = append(byRange[d.RangeID], k)
		}
		var retry [][]byte
		for id, ks := range byRange {
			args := store.TxnArgs{Txn: txn, Status: status, Keys: ks}
			err := db.node.ProposeTo(ctx, id, []store.Command{store.TxnCommand(store.OpTxnResolve, args)})
			switch {
			case err == nil:
			case errors.Is(err, ErrRangeMoved):
				retry = append(retry, ks...)
			default:
				return err
			}
		}
		left = retry
		if len(left) > 0 {
			if err := base.Sleep(ctx, time.Duration(attempt+1)*10*time.Millisecond); err != nil {
				return err
			}
		}
	}
	return nil
}

// sweepIntents looks at the intents of the ranges this node leads and resolves those of
// transactions that have ended or whose pending record has expired (a coordinator that died
// after preparing). It returns how many intents it found and how many remain held by pending
// transactions.
func (db *DB) sweepIntents(ctx context.Context) (found, pending int, err error) {
	for _, lr := range db.host.LocalReplicas() {
		if !lr.Leader {
			continue
		}
		ins, ierr := db.engine.Intents(lr.Range, 1000)
		if ierr != nil {
			err = errors.Join(err, ierr)
			continue
		}
		found += len(ins)
		seen := map[store.TxnID]bool{}
		for _, ki := range ins {
			if seen[ki.Intent.Txn] {
				continue
			}
			seen[ki.Intent.Txn] = true
			done, rerr := db.resolve(ctx, ki.Key, ki.Intent, false, true)
			if rerr != nil {
				err = errors.Join(err, rerr)
				continue
			}
			if !done {
				pending++
			}
		}
	}
	return found, pending, err
}

// sweepLoop runs sweepIntents every RecordTTL until the DB closes.
func (db *DB) sweepLoop() {
	t := time.NewTicker(db.opts.Txn.RecordTTL)
	defer t.Stop()
	for {
		select {
		case <-db.txn.stop.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(db.txn.stop, db.opts.Txn.RecordTTL)
		if _, _, err := db.sweepIntents(ctx); err != nil && db.txn.stop.Err() == nil {
			db.opts.Logger.Debug("intent sweep incomplete", "err", err)
		}
		cancel()
	}
}
