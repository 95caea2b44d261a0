package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"

	"github.com/bondkv/bondkv/internal/base"
	"github.com/cockroachdb/pebble/v2"
)

// TxnID identifies a distributed transaction.
type TxnID [16]byte

func (id TxnID) String() string { return hex.EncodeToString(id[:]) }

// IsZero reports the zero ID (no transaction).
func (id TxnID) IsZero() bool { return id == TxnID{} }

// TxnStatus is the state of a transaction record.
type TxnStatus uint8

// Transaction states. The numbers are part of the replicated encoding.
const (
	TxnPending   TxnStatus = 1
	TxnCommitted TxnStatus = 2
	TxnAborted   TxnStatus = 3
)

func (s TxnStatus) String() string {
	switch s {
	case TxnPending:
		return "pending"
	case TxnCommitted:
		return "committed"
	case TxnAborted:
		return "aborted"
	}
	return fmt.Sprintf("TxnStatus(%d)", uint8(s))
}

// IntentKind is what an intent holds a key for.
type IntentKind uint8

// Intent kinds. The numbers are part of the stored encoding.
const (
	// IntentWrite: the transaction writes Value to the key when it commits.
	IntentWrite IntentKind = 1
	// IntentDelete: the transaction deletes the key when it commits.
	IntentDelete IntentKind = 2
	// IntentLock: the transaction read the key; nobody else may write it until it ends.
	IntentLock IntentKind = 3
)

// TxnRecord is the record of a distributed transaction. It lives on the intent of the
// transaction's anchor key, so it moves with that key through splits and merges, and it is
// removed last, after every other intent of the transaction is resolved: an intent whose anchor
// holds no record of its transaction belongs to a transaction that has ended (or that never got
// its record, which then never commits).
type TxnRecord struct {
	Status TxnStatus
	// Expiry is when a pending record may be aborted by others (Unix nanoseconds of the
	// coordinator's clock).
	Expiry int64
	// Participants are the other keys that hold (or may hold) an intent of the transaction,
	// sorted, without duplicates.
	Participants [][]byte
}

// Intent is a transaction's hold on one key (stored under i/<key>).
type Intent struct {
	Txn    TxnID
	Kind   IntentKind
	Anchor []byte // the key whose intent carries the transaction's record
	Value  []byte // IntentWrite's value
	// Record is set on the anchor key's intent only.
	Record *TxnRecord
}

const intentVersion byte = 1

// EncodeIntent encodes an intent:
//
//	version byte (1) | txn [16] | kind byte | anchor (uvarint len, bytes) | value (uvarint len,
//	bytes) | 0, or 1 | status byte | expiry int64 BE | count uvarint | count × (uvarint len, key)
func EncodeIntent(in Intent) []byte {
	n := 1 + 16 + 1 + uvarintLen(uint64(len(in.Anchor))) + len(in.Anchor) + uvarintLen(uint64(len(in.Value))) + len(in.Value) + 1
	if in.Record != nil {
		n += 1 + 8 + uvarintLen(uint64(len(in.Record.Participants)))
		for _, p := range in.Record.Participants {
			n += uvarintLen(uint64(len(p))) + len(p)
		}
	}
	b := make([]byte, 0, n)
	b = append(b, intentVersion)
	b = append(b, in.Txn[:]...)
	b = append(b, byte(in.Kind))
	b = appendBytes(b, in.Anchor)
	b = appendBytes(b, in.Value)
	if in.Record == nil {
		return append(b, 0)
	}
	b = append(b, 1, byte(in.Record.Status))
	b = binary.BigEndian.AppendUint64(b, uint64(in.Record.Expiry))
	b = binary.AppendUvarint(b, uint64(len(in.Record.Participants)))
	for _, p := range in.Record.Participants {
		b = appendBytes(b, p)
	}
	return b
}

func appendBytes(b, s []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// DecodeIntent decodes a stored intent; the result aliases b. A malformed intent wraps
// base.ErrCorruption.
func DecodeIntent(b []byte) (Intent, error) {
	d := decoder{b: b}
	if v := d.byte(); d.err == nil && v != intentVersion {
		return Intent{}, corruptf("intent version %d", v)
	}
	var in Intent
	if d.err == nil && len(b)-d.off >= 16 {
		copy(in.Txn[:], b[d.off:d.off+16])
		d.off += 16
	} else if d.err == nil {
		d.err = corruptf("truncated intent")
	}
	in.Kind = IntentKind(d.byte())
	in.Anchor = d.bytes()
	in.Value = d.bytes()
	switch d.byte() {
	case 0:
	case 1:
		r := &TxnRecord{Status: TxnStatus(d.byte())}
		if d.err == nil && len(b)-d.off >= 8 {
			r.Expiry = int64(binary.BigEndian.Uint64(b[d.off:]))
			d.off += 8
		} else if d.err == nil {
			d.err = corruptf("truncated record")
		}
		n, _ := d.uvarint()
		if d.err == nil && n > uint64(len(b)) {
			d.err = corruptf("%d participants in %d bytes", n, len(b))
		}
		for i := uint64(0); d.err == nil && i < n; i++ {
			r.Participants = append(r.Participants, d.bytes())
		}
		if d.err == nil && (r.Status < TxnPending || r.Status > TxnAborted) {
			d.err = corruptf("record status %d", r.Status)
		}
		in.Record = r
	default:
		if d.err == nil {
			d.err = corruptf("bad record flag")
		}
	}
	if d.err != nil {
		return Intent{}, d.err
	}
	if d.off != len(b) {
		return Intent{}, corruptf("%d trailing bytes after an intent", len(b)-d.off)
	}
	if in.Kind < IntentWrite || in.Kind > IntentLock {
		return Intent{}, corruptf("intent kind %d", in.Kind)
	}
	if in.Kind != IntentWrite && len(in.Value) != 0 {
		return Intent{}, corruptf("a %d intent with a value", in.Kind)
	}
	return in, nil
}

// TxnRead is a key a transaction read and the version it saw (0: the key had no record).
type TxnRead struct {
	Key     []byte
	Version uint64
}

// TxnScan is a span a transaction scanned: the first Limit live keys (0: all) hashed with
// their versions (ScanDigest).
type TxnScan struct {
	Span   base.Span
	Limit  int
	Digest [32]byte
}

// TxnWrite is a buffered write of a transaction.
type TxnWrite struct {
	Key    []byte
	Delete bool
	Value  []byte
}

// TxnArgs are the arguments of the transaction commands (OpTxnCommit, OpTxnPrepare,
// OpTxnStatus, OpTxnResolve); each uses the fields its op documents.
type TxnArgs struct {
	Txn    TxnID
	Reads  []TxnRead
	Scans  []TxnScan
	Writes []TxnWrite
	// Locks are keys read (not written) that a prepare holds until the transaction ends.
	Locks [][]byte
	// Anchor is the key carrying the transaction's record.
	Anchor []byte
	// Record is laid on the anchor's intent by the prepare of the range holding the anchor.
	Record *TxnRecord
	// Status is OpTxnStatus's new status and OpTxnResolve's outcome.
	Status TxnStatus
	// Keys are the keys OpTxnResolve resolves.
	Keys [][]byte
}

const txnArgsVersion byte = 1

// EncodeTxnArgs encodes a.
func EncodeTxnArgs(a TxnArgs) []byte {
	b := []byte{txnArgsVersion}
	b = append(b, a.Txn[:]...)
	b = binary.AppendUvarint(b, uint64(len(a.Reads)))
	for _, r := range a.Reads {
		b = appendBytes(b, r.Key)
		b = binary.BigEndian.AppendUint64(b, r.Version)
	}
	b = binary.AppendUvarint(b, uint64(len(a.Scans)))
	for _, s := range a.Scans {
		b = appendSpan(b, s.Span)
		b = binary.AppendUvarint(b, uint64(s.Limit))
		b = append(b, s.Digest[:]...)
	}
	b = binary.AppendUvarint(b, uint64(len(a.Writes)))
	for _, w := range a.Writes {
		if w.Delete {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
		b = appendBytes(b, w.Key)
		b = appendBytes(b, w.Value)
	}
	b = binary.AppendUvarint(b, uint64(len(a.Locks)))
	for _, k := range a.Locks {
		b = appendBytes(b, k)
	}
	b = appendBytes(b, a.Anchor)
	if a.Record == nil {
		b = append(b, 0)
	} else {
		b = append(b, 1)
		b = appendBytes(b, EncodeIntent(Intent{Record: a.Record, Kind: IntentLock}))
	}
	b = append(b, byte(a.Status))
	b = binary.AppendUvarint(b, uint64(len(a.Keys)))
	for _, k := range a.Keys {
		b = appendBytes(b, k)
	}
	return b
}

// DecodeTxnArgs decodes and checks encoded TxnArgs (keys and values within limits, no
// trailing bytes); the result aliases b. Errors wrap base.ErrCorruption or a limit error.
func DecodeTxnArgs(b []byte) (TxnArgs, error) {
	d := decoder{b: b}
	if v := d.byte(); d.err == nil && v != txnArgsVersion {
		return TxnArgs{}, corruptf("transaction arguments version %d", v)
	}
	var a TxnArgs
	if d.err == nil && len(b)-d.off >= 16 {
		copy(a.Txn[:], b[d.off:])
		d.off += 16
	} else if d.err == nil {
		d.err = corruptf("truncated transaction arguments")
	}
	count := func() int {
		n, _ := d.uvarint()
		if d.err == nil && n > uint64(len(b)) {
			d.err = corruptf("count %d exceeds the %d-byte arguments", n, len(b))
		}
		if d.err != nil {
			return 0
		}
		return int(n)
	}
	u64 := func() uint64 {
		if d.err != nil {
			return 0
		}
		if len(b)-d.off < 8 {
			d.err = corruptf("truncated at byte %d", d.off)
			return 0
		}
		v := binary.BigEndian.Uint64(b[d.off:])
		d.off += 8
		return v
	}
	for i, n := 0, count(); i < n && d.err == nil; i++ {
		k := d.bytes()
		a.Reads = append(a.Reads, TxnRead{Key: k, Version: u64()})
	}
	for i, n := 0, count(); i < n && d.err == nil; i++ {
		var s TxnScan
		s.Span = d.span()
		lim, _ := d.uvarint()
		if d.err == nil && lim > uint64(base.MaxKeySize)<<20 {
			d.err = corruptf("scan limit %d", lim)
		}
		s.Limit = int(lim)
		if d.err == nil && len(b)-d.off >= 32 {
			copy(s.Digest[:], b[d.off:])
			d.off += 32
		} else if d.err == nil {
			d.err = corruptf("truncated scan digest")
		}
		a.Scans = append(a.Scans, s)
	}
	for i, n := 0, count(); i < n && d.err == nil; i++ {
		del := d.byte()
		w := TxnWrite{Key: d.bytes(), Value: d.bytes()}
		switch del {
		case 0:
		case 1:
			w.Delete = true
		default:
			d.err = corruptf("write flag %d", del)
		}
		a.Writes = append(a.Writes, w)
	}
	for i, n := 0, count(); i < n && d.err == nil; i++ {
		a.Locks = append(a.Locks, d.bytes())
	}
	a.Anchor = d.bytes()
	switch d.byte() {
	case 0:
	case 1:
		raw := d.bytes()
		if d.err == nil {
			in, err := DecodeIntent(raw)
			switch {
			case err != nil || in.Record == nil:
				d.err = corruptf("transaction record: %v", err)
			case !in.Txn.IsZero() || in.Kind != IntentLock || len(in.Anchor) != 0 || len(in.Value) != 0:
				d.err = corruptf("transaction record with intent fields")
			default:
				a.Record = in.Record
			}
		}
	default:
		if d.err == nil {
			d.err = corruptf("bad record flag")
		}
	}
	a.Status = TxnStatus(d.byte())
	for i, n := 0, count(); i < n && d.err == nil; i++ {
		a.Keys = append(a.Keys, d.bytes())
	}
	if d.err != nil {
		return TxnArgs{}, d.err
	}
	if d.off != len(b) {
		return TxnArgs{}, corruptf("%d trailing bytes after transaction arguments", len(b)-d.off)
	}
	return a, a.check()
}

// check applies the key and value limits to every field.
func (a TxnArgs) check() error {
	for _, r := range a.Reads {
		if err := base.CheckKey(r.Key); err != nil {
			return err
		}
	}
	for _, s := range a.Scans {
		if !s.Span.Valid() {
			return fmt.Errorf("%w: scan span %s", base.ErrInvalidRange, s.Span)
		}
	}
	for _, w := range a.Writes {
		if err := base.CheckKey(w.Key); err != nil {
			return err
		}
		if err := base.CheckValue(w.Value); err != nil {
			return err
		}
		if w.Delete && len(w.Value) != 0 {
			return corruptf("a delete with a value")
		}
	}
	for _, k := range append(slices.Clip(a.Locks), a.Keys...) {
		if err := base.CheckKey(k); err != nil {
			return err
		}
	}
	if len(a.Anchor) != 0 {
		if err := base.CheckKey(a.Anchor); err != nil {
			return err
		}
	}
	if a.Record != nil {
		for _, p := range a.Record.Participants {
			if err := base.CheckKey(p); err != nil {
				return err
			}
		}
	}
	if a.Status > TxnAborted {
		return corruptf("status %d", a.Status)
	}
	return nil
}

// TxnCommand returns a transaction command of kind op (OpTxnCommit, OpTxnPrepare, OpTxnStatus,
// OpTxnResolve) with arguments a.
func TxnCommand(op Op, a TxnArgs) Command { return Command{Op: op, Value: EncodeTxnArgs(a)} }

// Conflict is why a write or a transaction command did not apply: a key held by another
// transaction's intent (Txn set), or a read whose version changed (Txn zero).
type Conflict struct {
	// Cmd is the command's position in its entry.
	Cmd    int
	Key    []byte
	Txn    TxnID
	Anchor []byte
	Reason string
}

func (c Conflict) String() string {
	if c.Txn.IsZero() {
		return fmt.Sprintf("key %q: %s", c.Key, c.Reason)
	}
	return fmt.Sprintf("key %q: %s (transaction %s, record at %q)", c.Key, c.Reason, c.Txn, c.Anchor)
}

// IntentError is returned for a write that met another transaction's intent: nothing of it was
// applied. The caller resolves the intent (through the transaction's record) and tries again.
type IntentError struct {
	Key    []byte
	Txn    TxnID
	Anchor []byte
}

func (e *IntentError) Error() string {
	return fmt.Sprintf("store: key %q is held by transaction %s (record at %q)", e.Key, e.Txn, e.Anchor)
}

// EncodeConflicts and DecodeConflicts carry an entry's conflicts as a Raft result:
//
//	count uvarint | count × (cmd uvarint | key (uvarint len, bytes) | txn [16] |
//	anchor (uvarint len, bytes) | reason (uvarint len, bytes))
func EncodeConflicts(cs []Conflict) []byte {
	if len(cs) == 0 {
		return nil
	}
	b := binary.AppendUvarint(nil, uint64(len(cs)))
	for _, c := range cs {
		b = binary.AppendUvarint(b, uint64(c.Cmd))
		b = appendBytes(b, c.Key)
		b = append(b, c.Txn[:]...)
		b = appendBytes(b, c.Anchor)
		b = appendBytes(b, []byte(c.Reason))
	}
	return b
}

// DecodeConflicts decodes EncodeConflicts' output (nil or empty: none).
func DecodeConflicts(b []byte) ([]Conflict, error) {
	if len(b) == 0 {
		return nil, nil
	}
	d := decoder{b: b}
	n, err := d.uvarint()
	if err != nil {
		return nil, err
	}
	if n == 0 || n > uint64(len(b)) {
		return nil, corruptf("%d conflicts in %d bytes", n, len(b)) // none is encoded as nothing
	}
	out := make([]Conflict, 0, n)
	for i := uint64(0); i < n && d.err == nil; i++ {
		cmd, _ := d.uvarint()
		c := Conflict{Cmd: int(cmd), Key: bytes.Clone(d.bytes())}
		if d.err == nil && len(b)-d.off >= 16 {
			copy(c.Txn[:], b[d.off:])
			d.off += 16
		} else if d.err == nil {
			d.err = corruptf("truncated conflict")
		}
		c.Anchor = bytes.Clone(d.bytes())
		c.Reason = string(d.bytes())
		out = append(out, c)
	}
	if d.err != nil {
		return nil, d.err
	}
	if d.off != len(b) {
		return nil, corruptf("%d trailing bytes after conflicts", len(b)-d.off)
	}
	return out, nil
}

// readIntent returns key's intent in r, if any; a key the engine's intent set does not hold has
// none (no lookup).
func (e *Engine) readIntent(r pebble.Reader, key []byte) (Intent, bool, error) {
	if !e.intents.has(key) {
		return Intent{}, false, nil
	}
	v, closer, err := r.Get(base.IntentKey(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return Intent{}, false, nil
	}
	if err != nil {
		return Intent{}, false, err
	}
	defer closer.Close()
	in, err := DecodeIntent(v)
	if err != nil {
		return Intent{}, false, fmt.Errorf("intent of %q: %w", key, err)
	}
	in.Anchor = bytes.Clone(in.Anchor)
	in.Value = bytes.Clone(in.Value)
	if in.Record != nil {
		for i, p := range in.Record.Participants {
			in.Record.Participants[i] = bytes.Clone(p)
		}
	}
	return in, true, nil
}

// readVersion returns key's record version in r (0: no record) and whether it is live.
func readVersion(r pebble.Reader, key []byte) (uint64, error) {
	v, closer, err := r.Get(base.DataKey(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer closer.Close()
	rec, err := decodeRecord(v)
	if err != nil {
		return 0, fmt.Errorf("record of %q: %w", key, err)
	}
	return rec.Version, nil
}

// ScanDigest hashes the first limit (0: all) live keys of span in r with their versions: what a
// transaction's scan saw, so that a commit can check nothing changed in the span.
func scanDigest(r pebble.Reader, span base.Span, limit int) ([32]byte, error) {
	h := sha256.New()
	start, end := base.DataSpan(span)
	n := 0
	var buf [8]byte
	err := iterate(r, start, end, func(k, v []byte) (bool, error) {
		rec, err := decodeRecord(v)
		if err != nil {
			return false, fmt.Errorf("key %q: %w", k, err)
		}
		if rec.Deleted {
			return true, nil
		}
		addDigest(h, k[len(base.DataPrefix):], rec.Version, &buf)
		n++
		return limit <= 0 || n < limit, nil
	})
	var out [32]byte
	if err != nil {
		return out, err
	}
	copy(out[:], h.Sum(nil))
	return out, nil
}

// ScanDigest is the digest of a scan's result (keys ascending, with their versions), as the
// commit of a transaction recomputes it.
func ScanDigest(kvs []KV) [32]byte {
	h := sha256.New()
	var buf [8]byte
	for _, kv := range kvs {
		addDigest(h, kv.Key, kv.Value.Version, &buf)
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

func addDigest(h interface{ Write([]byte) (int, error) }, key []byte, version uint64, buf *[8]byte) {
	binary.BigEndian.PutUint64(buf[:], uint64(len(key)))
	h.Write(buf[:])
	h.Write(key)
	binary.BigEndian.PutUint64(buf[:], version)
	h.Write(buf[:])
}

// intentsIn returns the intents of span in r (at most limit, 0: all), ascending by key.
func intentsIn(r pebble.Reader, span base.Span, limit int) ([]KeyIntent, error) {
	start, end := base.IntentSpan(span)
	var out []KeyIntent
	err := iterate(r, start, end, func(k, v []byte) (bool, error) {
		in, err := DecodeIntent(bytes.Clone(v))
		if err != nil {
			return false, fmt.Errorf("intent %q: %w", k, err)
		}
		out = append(out, KeyIntent{Key: bytes.Clone(k[len(base.IntentPrefix):]), Intent: in})
		return limit <= 0 || len(out) < limit, nil
	})
	return out, err
}

// KeyIntent is an intent and its key.
type KeyIntent struct {
	Key    []byte
	Intent Intent
}

// TxnView is what a transactional read of one key sees: the committed record (Found false: no
// record at all; a tombstone has Found and Deleted) and the key's intent, if any.
type TxnView struct {
	Record Record
	Found  bool
	Intent *Intent
}

// GetTxn reads key's committed record and intent at one instant.
func (e *Engine) GetTxn(key []byte) (TxnView, error) {
	if err := e.enter(); err != nil {
		return TxnView{}, err
	}
	defer e.exit()
	if err := base.CheckKey(key); err != nil {
		return TxnView{}, err
	}
	// The intent set is consulted at the instant the record is read: a key leaves it only after
	// the batch resolving its intent has committed, so a key missing from it has no intent in
	// any state read afterwards (one laid later is pending, and read past). A key in it is read
	// at one Pebble snapshot with its intent.
	var rd pebble.Reader = e.db
	e.intents.mu.RLock()
	_, maybe := e.intents.m[string(key)]
	if maybe {
		snap := e.db.NewSnapshot()
		defer snap.Close()
		rd = snap
	}
	e.intents.mu.RUnlock()
	var out TxnView
	if maybe {
		in, ok, err := e.readIntent(rd, key)
		if err != nil {
			return TxnView{}, fmt.Errorf("store: get %q: %w", key, err)
		}
		if ok {
			out.Intent = &in
		}
	}
	v, closer, err := rd.Get(base.DataKey(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return out, nil
	}
	if err != nil {
		return TxnView{}, fmt.Errorf("store: get %q: %w", key, err)
	}
	defer closer.Close()
	r, err := decodeRecord(v)
	if err != nil {
		return TxnView{}, fmt.Errorf("store: get %q: %w", key, err)
	}
	r.Data = bytes.Clone(r.Data)
	out.Record, out.Found = r, true
	return out, nil
}

// ScanTxn reads the first limit (<= 0: all) live keys of span and the intents in the part of
// span that the scan covered, at one instant.
func (e *Engine) ScanTxn(span base.Span, limit int) ([]KV, []KeyIntent, error) {
	if err := e.enter(); err != nil {
		return nil, nil, err
	}
	defer e.exit()
	if err := checkSpan(span); err != nil {
		return nil, nil, err
	}
	snap := e.db.NewSnapshot()
	defer snap.Close()
	start, end := base.DataSpan(span)
	kvs, err := scanRecords(snap, start, end, len(base.DataPrefix), limit)
	if err != nil {
		return nil, nil, fmt.Errorf("store: scan: %w", err)
	}
	covered := span
	if limit > 0 && len(kvs) == limit {
		covered.End = append(bytes.Clone(kvs[len(kvs)-1].Key), 0)
	}
	ins, err := intentsIn(snap, covered, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("store: scan: %w", err)
	}
	return kvs, ins, nil
}

// Intents returns the intents in range id's span on this node (at most limit, <= 0: all), read
// locally: candidates for recovery, not a linearizable view.
func (e *Engine) Intents(id base.RangeID, limit int) ([]KeyIntent, error) {
	st, ok, err := e.RangeState(id)
	if err != nil || !ok || st.Span.Empty() {
		return nil, err
	}
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.exit()
	out, err := intentsIn(e.db, st.Span, limit)
	if err != nil {
		return nil, fmt.Errorf("store: range %d: intents: %w", id, err)
	}
	return out, nil
}
