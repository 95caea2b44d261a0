package store

import (
	"bytes"
	"fmt"

	"github.com/bondkv/bondkv/internal/base"
)

// txn applies a transaction command of an entry whose records get version. ok false means the
// command's checks failed (cf says why) and it wrote nothing; err is an engine failure. The
// caller checked the command's keys against the span (txnInSpan) and the freeze.
func (a *applier) txn(version uint64, c Command) (cf Conflict, ok bool, err error) {
	args, err := DecodeTxnArgs(c.Value)
	if err != nil { // Validate passed, so this cannot happen; refuse rather than guess
		return Conflict{Reason: err.Error()}, false, nil
	}
	switch c.Op {
	case OpTxnCommit, OpTxnPrepare:
		var own TxnID
		if c.Op == OpTxnPrepare {
			own = args.Txn
		}
		cf, ok, err := a.validate(args, own)
		if err != nil || !ok {
			return cf, ok, err
		}
		if c.Op == OpTxnCommit {
			for _, w := range args.Writes {
				if err := setRecord(a.b, []byte(base.DataPrefix), w.Key, version, w.Delete, w.Value); err != nil {
					return Conflict{}, false, err
				}
			}
			return Conflict{}, true, nil
		}
		return a.prepare(args)
	case OpTxnStatus:
		in, held, err := a.e.readIntent(a.rd, args.Anchor)
		if err != nil {
			return Conflict{}, false, err
		}
		switch {
		case !held || in.Txn != args.Txn || in.Record == nil:
			return Conflict{Key: args.Anchor, Txn: args.Txn, Anchor: args.Anchor, Reason: "no record of the transaction"}, false, nil
		case in.Record.Status == args.Status:
			return Conflict{}, true, nil
		case in.Record.Status != TxnPending:
			return Conflict{Key: args.Anchor, Txn: args.Txn, Anchor: args.Anchor, Reason: "the transaction is " + in.Record.Status.String()}, false, nil
		}
		if args.Status == TxnCommitted && len(args.Scans) > 0 {
			// The scans of the anchor's range are checked again at the commit point itself:
			// an insert into a scanned span after the prepare must not slip in before it.
			if cf, ok, err := a.validate(TxnArgs{Txn: args.Txn, Scans: args.Scans}, args.Txn); err != nil || !ok {
				return cf, ok, err
			}
		}
		in.Record.Status = args.Status
		return Conflict{}, true, a.b.Set(base.IntentKey(args.Anchor), EncodeIntent(in), nil)
	case OpTxnResolve:
		for _, k := range args.Keys {
			in, held, err := a.e.readIntent(a.rd, k)
			if err != nil {
				return Conflict{}, false, err
			}
			if !held || in.Txn != args.Txn {
				continue
			}
			if args.Status == TxnCommitted && in.Kind != IntentLock {
				if err := setRecord(a.b, []byte(base.DataPrefix), k, version, in.Kind == IntentDelete, in.Value); err != nil {
					return Conflict{}, false, err
				}
			}
			if err := a.b.Delete(base.IntentKey(k), nil); err != nil {
				return Conflict{}, false, err
			}
			a.intentDone(k, true)
		}
		return Conflict{}, true, nil
	}
	return Conflict{Reason: fmt.Sprintf("unknown transaction op %s", c.Op)}, false, nil
}

// txnInSpan checks that every key a transaction command touches lies in the range's span; if
// not it returns the first that does not.
func (a *applier) txnInSpan(c Command) ([]byte, bool) {
	args, err := DecodeTxnArgs(c.Value)
	if err != nil {
		return nil, true // validated already; txn refuses it
	}
	sp := a.st.Span
	in := func(k []byte) bool { return sp.Contains(k) && !sp.Empty() }
	for _, r := range args.Reads {
		if !in(r.Key) {
			return r.Key, false
		}
	}
	for _, s := range args.Scans {
		if !sp.Covers(s.Span) {
			return s.Span.Start, false
		}
	}
	for _, w := range args.Writes {
		if !in(w.Key) {
			return w.Key, false
		}
	}
	for _, k := range args.Locks {
		if !in(k) {
			return k, false
		}
	}
	for _, k := range args.Keys {
		if !in(k) {
			return k, false
		}
	}
	if (c.Op == OpTxnStatus || args.Record != nil) && !in(args.Anchor) {
		return args.Anchor, false
	}
	return nil, true
}

// validate checks a commit's or prepare's reads, scans and writes against the range as of
// this entry. own is the preparing transaction (zero for a one-phase commit): its own intents do
// not conflict.
func (a *applier) validate(args TxnArgs, own TxnID) (Conflict, bool, error) {
	foreign := func(in Intent, held bool) bool { return held && (own.IsZero() || in.Txn != own) }
	for _, r := range args.Reads {
		in, held, err := a.e.readIntent(a.rd, r.Key)
		if err != nil {
			return Conflict{}, false, err
		}
		// A one-phase commit reads past another's lock (both only read); a prepare takes the
		// key's lock itself, so any other holder conflicts.
		if foreign(in, held) && (!own.IsZero() || in.Kind != IntentLock) {
			return Conflict{Key: r.Key, Txn: in.Txn, Anchor: in.Anchor, Reason: "read key held by another transaction"}, false, nil
		}
		v, err := readVersion(a.rd, r.Key)
		if err != nil {
			return Conflict{}, false, err
		}
		if v != r.Version {
			return Conflict{Key: r.Key, Reason: fmt.Sprintf("read at version %d, now %d", r.Version, v)}, false, nil
		}
	}
	for _, s := range args.Scans {
		d, err := scanDigest(a.rd, s.Span, s.Limit)
		if err != nil {
			return Conflict{}, false, err
		}
		if d != s.Digest {
			return Conflict{Key: s.Span.Start, Reason: fmt.Sprintf("scan of %s changed", s.Span)}, false, nil
		}
		ins, err := intentsIn(a.rd, s.Span, 0)
		if err != nil {
			return Conflict{}, false, err
		}
		for _, ki := range ins {
			if foreign(ki.Intent, true) && ki.Intent.Kind != IntentLock {
				return Conflict{Key: ki.Key, Txn: ki.Intent.Txn, Anchor: ki.Intent.Anchor, Reason: "scanned key held by another transaction"}, false, nil
			}
		}
	}
	for _, w := range args.Writes {
		in, held, err := a.e.readIntent(a.rd, w.Key)
		if err != nil {
			return Conflict{}, false, err
		}
		if foreign(in, held) {
			return Conflict{Key: w.Key, Txn: in.Txn, Anchor: in.Anchor, Reason: "written key held by another transaction"}, false, nil
		}
	}
	for _, k := range args.Locks {
		in, held, err := a.e.readIntent(a.rd, k)
		if err != nil {
			return Conflict{}, false, err
		}
		if foreign(in, held) {
			return Conflict{Key: k, Txn: in.Txn, Anchor: in.Anchor, Reason: "read key held by another transaction"}, false, nil
		}
	}
	return Conflict{}, true, nil
}

// prepare lays a validated prepare's intents and, on the anchor, its record.
func (a *applier) prepare(args TxnArgs) (Conflict, bool, error) {
	if args.Record != nil && !containsKey(args.Writes, args.Locks, args.Anchor) {
		return Conflict{Key: args.Anchor, Reason: "the record's anchor is neither written nor locked"}, false, nil
	}
	if args.Record != nil {
		// A prepare arriving after the transaction ended (a duplicate, or one that a recovery
		// raced) must not bring it back.
		in, ok, err := a.e.readIntent(a.rd, args.Anchor)
		if err != nil {
			return Conflict{}, false, err
		}
		if ok && in.Txn == args.Txn && in.Record != nil && in.Record.Status != TxnPending {
			return Conflict{Key: args.Anchor, Txn: args.Txn, Anchor: args.Anchor, Reason: "the transaction is " + in.Record.Status.String()}, false, nil
		}
	}
	lay := func(key []byte, in Intent) error {
		in.Txn, in.Anchor = args.Txn, args.Anchor
		if args.Record != nil && bytes.Equal(key, args.Anchor) {
			in.Record = args.Record
		}
		a.e.intents.add(key) // before the batch commits: the set is a superset
		a.intentDone(key, false)
		return a.b.Set(base.IntentKey(key), EncodeIntent(in), nil)
	}
	written := make(map[string]bool, len(args.Writes))
	for _, w := range args.Writes {
		written[string(w.Key)] = true
		in := Intent{Kind: IntentWrite, Value: w.Value}
		if w.Delete {
			in = Intent{Kind: IntentDelete}
		}
		if err := lay(w.Key, in); err != nil {
			return Conflict{}, false, err
		}
	}
	for _, k := range args.Locks {
		if written[string(k)] {
			continue
		}
		if err := lay(k, Intent{Kind: IntentLock}); err != nil {
			return Conflict{}, false, err
		}
	}
	return Conflict{}, true, nil
}

func containsKey(ws []TxnWrite, locks [][]byte, k []byte) bool {
	for _, w := range ws {
		if bytes.Equal(w.Key, k) {
			return true
		}
	}
	for _, l := range locks {
		if bytes.Equal(l, k) {
			return true
		}
	}
	return false
}

// intentDone records that this call removed (or laid) key's intent; the removals that stand at
// the end leave the engine's intent set once the batch has committed.
func (a *applier) intentDone(key []byte, removed bool) {
	if a.intentChanges == nil {
		a.intentChanges = make(map[string]bool)
	}
	a.intentChanges[string(key)] = removed
}
