package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/bondkv/bondkv/internal/base"
	"github.com/cockroachdb/pebble/v2"
)

// Entry is one committed Raft entry of a range: Data is the output of EncodeCommands.
type Entry struct {
	Index uint64
	Data  []byte
}

// ResultCode is the outcome of applying one entry.
type ResultCode uint8

// Result codes. Every replica computes the same code for the same entry (see Apply for the one
// exception). The numbers are stable.
const (
	// ResultApplied: every command of the entry took effect.
	ResultApplied ResultCode = 1
	// ResultRejected: the entry does not decode, one of its commands fails Command.Validate or
	// the batch ValidateCommands, or an admin command's precondition does not hold (a split key
	// outside the span, a merge of a range that is not the right neighbour); nothing of it was
	// written. The entry still counts as applied.
	ResultRejected ResultCode = 2
	// ResultSkipped: the entry's index is at or below the stored applied index, so it was applied
	// before (a re-apply after a crash); nothing was written now.
	ResultSkipped ResultCode = 3
	// ResultOutOfSpan: a data write's key is outside the range's span (it was split away or
	// merged elsewhere); nothing of the entry was written.
	ResultOutOfSpan ResultCode = 4
	// ResultFrozen: the range is frozen (OpFreeze) and the entry writes; nothing was written.
	ResultFrozen ResultCode = 5
	// ResultConditionFailed: an OpCPutLocal's condition did not hold; nothing was written.
	ResultConditionFailed ResultCode = 6
)

func (c ResultCode) String() string {
	switch c {
	case ResultApplied:
		return "applied"
	case ResultRejected:
		return "rejected"
	case ResultSkipped:
		return "skipped"
	case ResultOutOfSpan:
		return "out of span"
	case ResultFrozen:
		return "frozen"
	case ResultConditionFailed:
		return "condition failed"
	}
	return fmt.Sprintf("ResultCode(%d)", uint8(c))
}

// Result is the outcome of one entry, in the same position as the entry.
type Result struct {
	Code ResultCode
	// Err says why an entry was not applied (every code but ResultApplied and ResultSkipped)
	// and is nil otherwise. For ResultRejected it wraps base.ErrCorruption (the entry does not
	// decode), the first offending command's base.ErrEmptyKey, base.ErrKeyTooLarge or
	// base.ErrValueTooLarge, or base.ErrInvalidRange (a bad admin command); ResultOutOfSpan
	// wraps base.ErrInvalidRange. It depends on the entry and the range's state alone, so every
	// replica reports the same.
	Err error
	// Split describes the two ranges after an applied OpSplit, nil otherwise.
	Split *SplitResult
	// Merge describes the range after an applied OpMerge, nil otherwise.
	Merge *MergeResult
	// Conflicts are the data writes (OpPut, OpDelete) of an applied entry that were skipped
	// because another transaction's intent holds their key, or the conflict that failed a
	// transaction command (ResultConditionFailed).
	Conflicts []Conflict
}

// Apply applies entries of range id, in ascending Index order, in one pebble batch together
// with the range's applied index, which becomes the last entry's Index, and its state. The batch
// is committed without fsync: durability comes from Sync. A record written by entry i gets
// version VersionBase+i (VersionBase of the range's state before the entry); within an entry
// later commands win over earlier ones on the same key. Each entry takes effect whole or not at
// all:
//
//   - An entry that does not decode, or fails ValidateCommands, is ResultRejected.
//   - An entry with a data write (OpPut, OpDelete) outside the range's span is ResultOutOfSpan.
//     A range without a state on this node has base.NoSpan: its data writes are all out of span
//     and its admin commands are rejected, but its range-local writes apply.
//   - An entry that writes (data, range-local, split, merge) while the range is frozen is
//     ResultFrozen. OpUnfreeze lifts the freeze; OpFreeze on a frozen range is a no-op.
//   - An entry with an OpCPutLocal whose condition does not hold (checked in command order,
//     seeing the entry's own earlier writes) is ResultConditionFailed.
//   - OpSplit and OpMerge change the range's state (and the other range's state key) as
//     described in doc.go, or are ResultRejected if their preconditions do not hold.
//
// Results are the same on every replica, with one exception: a split whose new range already has
// a state on this node (it was created here from a snapshot first) leaves that state alone.
//
// An entry whose Index is at or below the stored applied index is skipped as ResultSkipped, so
// re-applying entries after a crash is a no-op. An entry with empty Data (a Raft no-op) is
// applied with no effect but the applied index.
//
// Apply returns an error, and changes nothing, only if the engine fails, is closed, or the call
// itself is malformed (range id 0, indices not strictly ascending).
func (e *Engine) Apply(id base.RangeID, entries []Entry) ([]Result, error) {
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.exit()
	if err := checkRangeID(id); err != nil {
		return nil, err
	}
	for i := 1; i < len(entries); i++ {
		if entries[i].Index <= entries[i-1].Index {
			return nil, fmt.Errorf("store: range %d: apply: entry indices not ascending: %d after %d",
				id, entries[i].Index, entries[i-1].Index)
		}
	}

	// Decode every entry first: admin commands name the other ranges whose state they change,
	// and Apply takes the locks of all of them, in ascending id order, before anything else.
	results := make([]Result, len(entries))
	var cmds []Command
	ends := make([]int, len(entries))
	var others []base.RangeID
	hasTxn := false
	for i, ent := range entries {
		n := len(cmds)
		if len(ent.Data) != 0 {
			var err error
			cmds, err = decodeCommands(cmds, ent.Data)
			if err == nil {
				err = ValidateCommands(cmds[n:])
			}
			if err != nil {
				cmds = cmds[:n]
				results[i] = Result{Code: ResultRejected, Err: fmt.Errorf("range %d: entry %d: %w", id, ent.Index, err)}
			} else if other := otherRange(cmds[n:]); other != 0 && other != id {
				others = append(others, other)
			} else {
				for _, c := range cmds[n:] {
					hasTxn = hasTxn || c.Op.txn() || c.Op == OpMergeValue
				}
			}
		}
		ends[i] = len(cmds)
	}
	a := applier{e: e, id: id}
	if err := a.lock(others); err != nil {
		return nil, err
	}
	defer a.unlock()

	// Transaction commands read what earlier entries of the same call wrote: their batch is
	// indexed. Other batches are not (cheaper); their reads (intents under plain writes) cannot
	// depend on the batch, since only transaction commands lay or remove intents.
	var b *pebble.Batch
	if hasTxn {
		b = e.db.NewIndexedBatch()
		a.rd = b
	} else {
		b = e.db.NewBatch()
		a.rd = e.db
	}
	defer b.Close()
	a.b = b
	rs := a.self
	applied := rs.applied
	a.st, a.hasState = rs.state, rs.hasState
	last := applied
	for i, ent := range entries {
		if ent.Index <= applied {
			results[i] = Result{Code: ResultSkipped}
			continue
		}
		last = ent.Index
		if results[i].Code == ResultRejected || len(ent.Data) == 0 {
			if results[i].Code == 0 {
				results[i].Code = ResultApplied
			}
			continue
		}
		start := 0
		if i > 0 {
			start = ends[i-1]
		}
		var err error
		if results[i], err = a.entry(ent.Index, cmds[start:ends[i]]); err != nil {
			return nil, fmt.Errorf("store: range %d: apply %d: %w", id, ent.Index, err)
		}
	}
	if last == applied {
		return results, nil // everything was skipped (or there was nothing)
	}
	if err := a.finish(last); err != nil {
		return nil, fmt.Errorf("store: range %d: apply: %w", id, err)
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return nil, fmt.Errorf("store: range %d: apply %d: commit: %w", id, last, err)
	}
	rs.applied = last
	a.commitCache()
	return results, nil
}

// otherRange returns the range an admin command changes besides its own (the new range of a
// split, the right range of a merge), 0 if none. cmds are validated.
func otherRange(cmds []Command) base.RangeID {
	if len(cmds) != 1 {
		return 0
	}
	switch c := cmds[0]; c.Op {
	case OpSplit:
		return base.RangeID(binary.BigEndian.Uint64(c.Value))
	case OpMerge:
		if m, err := decodeMergeArgs(c.Value); err == nil {
			return m.Right
		}
	}
	return 0
}

// applier is the state of one Apply call.
type applier struct {
	e      *Engine
	id     base.RangeID
	b      *pebble.Batch
	rd     pebble.Reader                // reads what this call wrote before, where that matters (see Apply)
	self   *rangeState                  // range id's, locked and loaded
	others map[base.RangeID]*rangeState // the other ranges changed by admin commands, locked and loaded

	st         RangeState // range id's state as of the entry being applied
	hasState   bool
	stateDirty bool
	// pending are the state changes of other ranges: nil deletes the state key.
	pending map[base.RangeID]*RangeState
	// members are the initial voters (encoded split arguments) of ranges a split created.
	members map[base.RangeID][]byte
	// local are the range-local records written so far by this call, for conditions.
	local map[string]localRecord
	// localPrefix is base.LocalUserPrefix(id), once needed.
	localPrefix []byte
	// intentChanges: user key → whether this call's last change to its intent removed it.
	intentChanges map[string]bool
}

type localRecord struct {
	deleted bool
	value   []byte // aliases the entry
}

// lock locks range a.id and the others in ascending id order and loads their caches. On error
// nothing is left locked; otherwise the caller calls unlock.
func (a *applier) lock(others []base.RangeID) error {
	ids := []base.RangeID{a.id}
	if len(others) > 0 {
		ids = append(others, a.id)
		slices.Sort(ids)
		ids = slices.Compact(ids)
	}
	if len(ids) > 1 {
		a.others = make(map[base.RangeID]*rangeState, len(ids)-1)
	}
	for _, id := range ids {
		rs := a.e.rangeState(id)
		rs.mu.Lock()
		if id == a.id {
			a.self = rs
		} else {
			a.others[id] = rs
		}
		if err := a.e.load(rs, id); err != nil {
			a.unlock()
			return err
		}
	}
	return nil
}

// unlock releases the locks lock took.
func (a *applier) unlock() {
	if a.self != nil {
		a.self.mu.Unlock()
	}
	for _, rs := range a.others {
		rs.mu.Unlock()
	}
}

// entry applies one decoded, validated, non-empty entry to the batch.
func (a *applier) entry(index uint64, cmds []Command) (Result, error) {
	if len(cmds) == 1 && cmds[0].Op.admin() {
		return a.admin(index, cmds[0])
	}
	if len(cmds) == 0 {
		return Result{Code: ResultApplied}, nil
	}
	hasCond := false
	for _, c := range cmds {
		if (c.Op == OpPut || c.Op == OpDelete || c.Op == OpMergeValue) && !a.st.Span.Contains(c.Key) {
			return a.result(ResultOutOfSpan, index, fmt.Errorf("%w: key %q outside the range's span %s", base.ErrInvalidRange, c.Key, a.st.Span)), nil
		}
		if c.Op.txn() {
			if key, ok := a.txnInSpan(c); !ok {
				return a.result(ResultOutOfSpan, index, fmt.Errorf("%w: key %q outside the range's span %s", base.ErrInvalidRange, key, a.st.Span)), nil
			}
		}
		hasCond = hasCond || c.Op == OpCPutLocal
	}
	if a.st.Frozen {
		return a.result(ResultFrozen, index, errors.New("the range is frozen")), nil
	}
	if hasCond {
		failed, err := a.conditions(cmds)
		if err != nil {
			return Result{}, err
		}
		if failed != nil {
			return a.result(ResultConditionFailed, index, failed), nil
		}
	}
	version := a.st.VersionBase + index
	var conflicts []Conflict
	for i, c := range cmds {
		var err error
		switch c.Op {
		case OpTxnCommit, OpTxnPrepare, OpTxnStatus, OpTxnResolve:
			cf, ok, terr := a.txn(version, c)
			if terr != nil {
				return Result{}, terr
			}
			if !ok {
				cf.Cmd = i
				conflicts = append(conflicts, cf)
			}
			continue
		case OpMergeValue:
			in, held, ierr := a.e.readIntent(a.rd, c.Key)
			if ierr != nil {
				return Result{}, ierr
			}
			if held {
				conflicts = append(conflicts, Conflict{Cmd: i, Key: bytes.Clone(c.Key), Txn: in.Txn, Anchor: in.Anchor, Reason: "held by a transaction"})
				continue
			}
			cur, found, rerr := readLive(a.rd, c.Key)
			if rerr != nil {
				return Result{}, rerr
			}
			merged, ok := MergeFunc(c.Value[0]).apply(cur, found, c.Value[1:])
			if !ok || len(merged) > base.MaxValueSize {
				conflicts = append(conflicts, Conflict{Cmd: i, Key: bytes.Clone(c.Key), Reason: "the stored value does not fit the merge function (or the result is too large)"})
				continue
			}
			err = setRecord(a.b, []byte(base.DataPrefix), c.Key, version, false, merged)
		case OpPut, OpDelete:
			in, held, ierr := a.e.readIntent(a.rd, c.Key)
			if ierr != nil {
				return Result{}, ierr
			}
			if held {
				conflicts = append(conflicts, Conflict{Cmd: i, Key: bytes.Clone(c.Key), Txn: in.Txn, Anchor: in.Anchor, Reason: "held by a transaction"})
				continue
			}
			err = setRecord(a.b, []byte(base.DataPrefix), c.Key, version, c.Op == OpDelete, c.Value)
		default:
			if a.localPrefix == nil {
				a.localPrefix = base.LocalUserPrefix(a.id)
			}
			deleted := c.Op == OpDeleteLocal
			err = setRecord(a.b, a.localPrefix, c.Key, version, deleted, c.Value)
			if a.local == nil {
				a.local = make(map[string]localRecord)
			}
			a.local[string(c.Key)] = localRecord{deleted: deleted, value: c.Value}
		}
		if err != nil {
			return Result{}, err
		}
	}
	return Result{Code: ResultApplied, Conflicts: conflicts}, nil
}

// result is a Result that was not applied, with an error naming the range and entry.
func (a *applier) result(code ResultCode, index uint64, err error) Result {
	return Result{Code: code, Err: fmt.Errorf("range %d: entry %d: %w", a.id, index, err)}
}

// conditions checks the OpCPutLocal conditions of an entry in command order, each seeing the
// entry's earlier local writes. failed describes the first that does not hold; err is an engine
// failure.
func (a *applier) conditions(cmds []Command) (failed, err error) {
	mine := make(map[string]localRecord)
	for _, c := range cmds {
		if !c.Op.local() {
			continue
		}
		if c.Op == OpCPutLocal {
			cur, ok := mine[string(c.Key)]
			if !ok {
				if cur, err = a.readLocal(c.Key); err != nil {
					return nil, err
				}
			}
			switch {
			case c.ExpectAbsent && !cur.deleted:
				return fmt.Errorf("local key %q exists", c.Key), nil
			case !c.ExpectAbsent && cur.deleted:
				return fmt.Errorf("local key %q is absent", c.Key), nil
			case !c.ExpectAbsent && !bytes.Equal(cur.value, c.Expect):
				return fmt.Errorf("local key %q has another value", c.Key), nil
			}
		}
		mine[string(c.Key)] = localRecord{deleted: c.Op == OpDeleteLocal, value: c.Value}
	}
	return nil, nil
}

// readLocal returns the current range-local record of key: written earlier in this Apply, or
// stored. An absent key reads as deleted.
func (a *applier) readLocal(key []byte) (localRecord, error) {
	if r, ok := a.local[string(key)]; ok {
		return r, nil
	}
	v, closer, err := a.e.db.Get(base.LocalUserKey(a.id, key))
	if errors.Is(err, pebble.ErrNotFound) {
		return localRecord{deleted: true}, nil
	}
	if err != nil {
		return localRecord{}, err
	}
	defer closer.Close()
	r, err := decodeRecord(v)
	if err != nil {
		return localRecord{}, fmt.Errorf("local key %q: %w", key, err)
	}
	return localRecord{deleted: r.Deleted, value: bytes.Clone(r.Data)}, nil
}

// admin applies an admin command (alone in its entry).
func (a *applier) admin(index uint64, c Command) (Result, error) {
	if !a.hasState {
		return a.result(ResultRejected, index, fmt.Errorf("%w: %s of a range with no state on this node", base.ErrInvalidRange, c.Op)), nil
	}
	switch c.Op {
	case OpFreeze:
		if !a.st.Frozen {
			a.st.Frozen, a.stateDirty = true, true
		}
		return Result{Code: ResultApplied}, nil
	case OpUnfreeze:
		if a.st.Frozen {
			a.st.Frozen, a.stateDirty = false, true
		}
		return Result{Code: ResultApplied}, nil
	}
	if a.st.Frozen {
		return a.result(ResultFrozen, index, fmt.Errorf("%s of a frozen range", c.Op)), nil
	}
	if c.Op == OpSplit {
		return a.split(index, c), nil
	}
	return a.merge(index, c), nil
}

// otherHasState reports whether range id (locked) has a state, counting this call's changes.
func (a *applier) otherHasState(id base.RangeID) bool {
	if p, ok := a.pending[id]; ok {
		return p != nil
	}
	return a.others[id].hasState
}

// setOther records a change of another range's state (nil: delete it).
func (a *applier) setOther(id base.RangeID, st *RangeState) {
	if a.pending == nil {
		a.pending = make(map[base.RangeID]*RangeState)
	}
	a.pending[id] = st
}

// finish adds the changed state keys and the applied index to the batch.
func (a *applier) finish(applied uint64) error {
	if a.stateDirty {
		if err := a.b.Set(base.StateKey(a.id), encodeState(a.st), nil); err != nil {
			return err
		}
	}
	for id, m := range a.members {
		if err := a.b.Set(base.RangeLocalKey(id, membersSuffix), m, nil); err != nil {
			return err
		}
	}
	for id, st := range a.pending {
		var err error
		if st == nil {
			err = a.b.Delete(base.StateKey(id), nil)
		} else {
			err = a.b.Set(base.StateKey(id), encodeState(*st), nil)
		}
		if err != nil {
			return err
		}
	}
	var idx [8]byte
	binary.BigEndian.PutUint64(idx[:], applied)
	return a.b.Set(base.AppliedIndexKey(a.id), idx[:], nil)
}

// commitCache brings the cached states (and the engine's intent set) in line with the committed
// batch.
func (a *applier) commitCache() {
	if a.intentChanges != nil {
		a.e.intents.remove(a.intentChanges)
	}
	if a.stateDirty {
		a.self.state, a.self.hasState = a.st, true
	}
	for id, st := range a.pending {
		rs := a.others[id]
		if st == nil {
			rs.state, rs.hasState = RangeState{Span: base.NoSpan}, false
		} else {
			rs.state, rs.hasState = *st, true
		}
	}
}

// setRecord adds a value record (version v) under prefix+key to b, encoding directly into the
// batch. A deleted record has no value.
func setRecord(b *pebble.Batch, prefix, key []byte, v uint64, deleted bool, value []byte) error {
	if deleted {
		value = nil
	}
	op := b.SetDeferred(len(prefix)+len(key), recordLen(len(value)))
	copy(op.Key[copy(op.Key, prefix):], key)
	putRecord(op.Value, v, deleted, value)
	return op.Finish()
}

// AppliedIndex returns the index of the last entry applied to range id, 0 if none was.
func (e *Engine) AppliedIndex(id base.RangeID) (uint64, error) {
	if err := e.enter(); err != nil {
		return 0, err
	}
	defer e.exit()
	if err := checkRangeID(id); err != nil {
		return 0, err
	}
	rs, err := e.lockRange(id)
	if err != nil {
		return 0, err
	}
	defer rs.mu.Unlock()
	return rs.applied, nil
}

// readAppliedIndex reads range id's applied index from r (the DB or a pebble snapshot).
func readAppliedIndex(r pebble.Reader, id base.RangeID) (uint64, error) {
	v, closer, err := r.Get(base.AppliedIndexKey(id))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("store: range %d: read applied index: %w", id, err)
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("store: range %d: applied index: %w", id, corruptf("%d bytes", len(v)))
	}
	return binary.BigEndian.Uint64(v), nil
}
