package store

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/bondkv/bondkv/internal/base"
)

func txnID(b byte) TxnID { var id TxnID; id[0] = b; return id }

func txnCmd(op Op, a TxnArgs) Command { return TxnCommand(op, a) }

// TestTxnArgsRoundTrip: every field survives encoding; truncations and trailing bytes are
// refused as corruption.
func TestTxnArgsRoundTrip(t *testing.T) {
	a := TxnArgs{
		Txn:    txnID(7),
		Reads:  []TxnRead{{Key: []byte("a"), Version: 3}, {Key: []byte("b")}},
		Scans:  []TxnScan{{Span: base.Span{Start: []byte("c"), End: []byte("d")}, Limit: 5, Digest: [32]byte{1}}},
		Writes: []TxnWrite{{Key: []byte("a"), Value: []byte("v")}, {Key: []byte("e"), Delete: true}},
		Locks:  [][]byte{[]byte("b")},
		Anchor: []byte("a"),
		Record: &TxnRecord{Status: TxnPending, Expiry: 42, Participants: [][]byte{[]byte("b"), []byte("e")}},
		Status: TxnCommitted,
		Keys:   [][]byte{[]byte("a")},
	}
	b := EncodeTxnArgs(a)
	got, err := DecodeTxnArgs(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(EncodeTxnArgs(got), b) {
		t.Fatalf("re-encoding differs")
	}
	if !reflect.DeepEqual(got.Record, a.Record) || !reflect.DeepEqual(got.Scans, a.Scans) || got.Reads[0].Version != 3 {
		t.Fatalf("decoded %+v", got)
	}
	for n := 0; n < len(b); n++ {
		if _, err := DecodeTxnArgs(b[:n]); err == nil {
			t.Fatalf("truncated to %d bytes: no error", n)
		}
	}
	if _, err := DecodeTxnArgs(append(b, 0)); !errors.Is(err, base.ErrCorruption) {
		t.Fatalf("trailing byte: %v", err)
	}
	in := Intent{Txn: txnID(1), Kind: IntentWrite, Anchor: []byte("a"), Value: []byte("v"), Record: a.Record}
	ib := EncodeIntent(in)
	gi, err := DecodeIntent(ib)
	if err != nil || !reflect.DeepEqual(gi, in) {
		t.Fatalf("intent round trip: %+v, %v", gi, err)
	}
	for n := 0; n < len(ib); n++ {
		if _, err := DecodeIntent(ib[:n]); err == nil {
			t.Fatalf("intent truncated to %d bytes: no error", n)
		}
	}
}

// TestTxnCommands drives a two-phase transaction and its conflicts through Apply.
func TestTxnCommands(t *testing.T) {
	e := openMem(t)
	mustInit(t, e, 3, base.Span{Start: []byte("a"), End: []byte("m")})
	mustApply(t, e, 3, entry(1, put("a", "1"), put("b", "1")))
	va, _ := e.Get([]byte("a"))

	// A one-phase commit with a stale read fails whole.
	res := mustApply(t, e, 3, entry(2, txnCmd(OpTxnCommit, TxnArgs{Txn: txnID(9),
		Reads:  []TxnRead{{Key: []byte("a"), Version: va.Version + 100}},
		Writes: []TxnWrite{{Key: []byte("b"), Value: []byte("x")}}})))
	if res[0].Code != ResultApplied || len(res[0].Conflicts) != 1 {
		t.Fatalf("stale 1PC: %+v", res[0])
	}
	if v, _ := e.Get([]byte("b")); string(v.Data) != "1" {
		t.Fatalf("a failed 1PC wrote b = %s", v.Data)
	}

	// Prepare T1: write a (anchor, record), lock b.
	t1 := txnID(1)
	rec := &TxnRecord{Status: TxnPending, Expiry: 1, Participants: [][]byte{[]byte("b")}}
	prep := TxnArgs{Txn: t1, Reads: []TxnRead{{Key: []byte("a"), Version: va.Version}, {Key: []byte("b"), Version: va.Version}},
		Writes: []TxnWrite{{Key: []byte("a"), Value: []byte("2")}}, Locks: [][]byte{[]byte("b")}, Anchor: []byte("a"), Record: rec}
	// A plain put of b in the same entry after the prepare is held off by the lock; one of c
	// is not.
	res = mustApply(t, e, 3, entry(3, txnCmd(OpTxnPrepare, prep), put("b", "plain"), put("c", "plain")))
	if res[0].Code != ResultApplied || len(res[0].Conflicts) != 1 || res[0].Conflicts[0].Cmd != 1 || res[0].Conflicts[0].Txn != t1 {
		t.Fatalf("prepare + puts: %+v", res[0])
	}
	if v, _ := e.Get([]byte("c")); string(v.Data) != "plain" {
		t.Fatalf("c = %q", v.Data)
	}
	view, err := e.GetTxn([]byte("a"))
	if err != nil || view.Intent == nil || view.Intent.Record == nil || view.Intent.Record.Status != TxnPending || string(view.Record.Data) != "1" {
		t.Fatalf("a after prepare: %+v, %v", view, err)
	}
	// A second transaction preparing over the same key conflicts; re-preparing T1 does not.
	res = mustApply(t, e, 3, entry(4, txnCmd(OpTxnPrepare, TxnArgs{Txn: txnID(2), Writes: []TxnWrite{{Key: []byte("b"), Value: []byte("y")}}, Anchor: []byte("b")}), txnCmd(OpTxnPrepare, prep)))
	if len(res[0].Conflicts) != 1 || res[0].Conflicts[0].Cmd != 0 {
		t.Fatalf("crossing prepare: %+v", res[0])
	}
	// Commit flip, then resolution: a gets 2, b's lock goes, the record goes last.
	res = mustApply(t, e, 3, entry(5, txnCmd(OpTxnStatus, TxnArgs{Txn: t1, Anchor: []byte("a"), Status: TxnCommitted})))
	if len(res[0].Conflicts) != 0 {
		t.Fatalf("flip: %+v", res[0])
	}
	res = mustApply(t, e, 3, entry(6, txnCmd(OpTxnStatus, TxnArgs{Txn: t1, Anchor: []byte("a"), Status: TxnAborted})))
	if len(res[0].Conflicts) != 1 {
		t.Fatalf("abort after commit must fail: %+v", res[0])
	}
	mustApply(t, e, 3, entry(7, txnCmd(OpTxnResolve, TxnArgs{Txn: t1, Status: TxnCommitted, Keys: [][]byte{[]byte("b"), []byte("a")}})))
	if v, _ := e.Get([]byte("a")); string(v.Data) != "2" || v.Version != 7 {
		t.Fatalf("a after commit: %q at %d", v.Data, v.Version)
	}
	if ins, err := e.Intents(3, 0); err != nil || len(ins) != 0 {
		t.Fatalf("intents left: %v, %v", ins, err)
	}
	// A command with a key outside the span fails the whole entry, the plain put with it too.
	res = mustApply(t, e, 3, entry(8, put("d", "x"), txnCmd(OpTxnCommit, TxnArgs{Txn: txnID(3), Writes: []TxnWrite{{Key: []byte("z"), Value: []byte("x")}}})))
	if res[0].Code != ResultOutOfSpan {
		t.Fatalf("out of span: %+v", res[0])
	}
	if _, err := e.Get([]byte("d")); !errors.Is(err, base.ErrNotFound) {
		t.Fatalf("d written by a refused entry: %v", err)
	}
}

func FuzzDecodeTxnArgs(f *testing.F) {
	f.Add([]byte{})
	f.Add(EncodeTxnArgs(TxnArgs{}))
	f.Add(EncodeTxnArgs(TxnArgs{Txn: txnID(1), Reads: []TxnRead{{Key: []byte("a"), Version: 9}},
		Scans:  []TxnScan{{Span: base.Span{Start: []byte("a")}, Limit: 3}},
		Writes: []TxnWrite{{Key: []byte("b"), Value: []byte("v")}, {Key: []byte("c"), Delete: true}},
		Locks:  [][]byte{[]byte("a")}, Anchor: []byte("b"),
		Record: &TxnRecord{Status: TxnPending, Expiry: 5, Participants: [][]byte{[]byte("c")}},
		Status: TxnAborted, Keys: [][]byte{[]byte("b")}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := DecodeTxnArgs(b)
		if err != nil {
			return // any error is fine; a panic is not
		}
		if re := EncodeTxnArgs(a); !bytes.Equal(re, b) {
			t.Fatalf("re-encoding %x gave %x", b, re)
		}
	})
}

func FuzzDecodeIntent(f *testing.F) {
	f.Add(EncodeIntent(Intent{Txn: txnID(1), Kind: IntentDelete, Anchor: []byte("a")}))
	f.Add(EncodeIntent(Intent{Txn: txnID(2), Kind: IntentWrite, Anchor: []byte("a"), Value: []byte("v"),
		Record: &TxnRecord{Status: TxnCommitted, Expiry: -1, Participants: [][]byte{[]byte("b")}}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		in, err := DecodeIntent(b)
		if err != nil {
			if !errors.Is(err, base.ErrCorruption) {
				t.Fatalf("error %v does not wrap ErrCorruption", err)
			}
			return
		}
		if re := EncodeIntent(in); !bytes.Equal(re, b) {
			t.Fatalf("re-encoding %x gave %x", b, re)
		}
	})
}

func FuzzDecodeConflictsAndSets(f *testing.F) {
	f.Add(EncodeConflicts([]Conflict{{Cmd: 3, Key: []byte("k"), Txn: txnID(1), Anchor: []byte("a"), Reason: "r"}}))
	f.Add(EncodeSet([][]byte{[]byte("x"), []byte("y")}))
	f.Fuzz(func(t *testing.T, b []byte) {
		if cs, err := DecodeConflicts(b); err == nil && len(b) > 0 {
			if re := EncodeConflicts(cs); !bytes.Equal(re, b) {
				t.Fatalf("conflicts: re-encoding %x gave %x", b, re)
			}
		}
		if set, err := DecodeSet(b); err == nil {
			if re := EncodeSet(set); !bytes.Equal(re, b) {
				t.Fatalf("set: re-encoding %x gave %x", b, re)
			}
		}
	})
}

// TestTxnCommitRechecksScans: an insert into a span the transaction scanned, landing between
// its prepare and its commit point, fails the commit.
func TestTxnCommitRechecksScans(t *testing.T) {
	e := openMem(t)
	mustInit(t, e, 3, base.Span{Start: []byte("a"), End: []byte("z")})
	span := base.Span{Start: []byte("c"), End: []byte("d")}
	t1 := txnID(1)
	scan := TxnScan{Span: span, Digest: ScanDigest(nil)}
	rec := &TxnRecord{Status: TxnPending, Expiry: 1}
	res := mustApply(t, e, 3, entry(1, txnCmd(OpTxnPrepare, TxnArgs{Txn: t1, Scans: []TxnScan{scan},
		Writes: []TxnWrite{{Key: []byte("p"), Value: []byte("1")}}, Anchor: []byte("p"), Record: rec})))
	if len(res[0].Conflicts) != 0 {
		t.Fatalf("prepare: %+v", res[0])
	}
	mustApply(t, e, 3, entry(2, put("c5", "phantom")))
	res = mustApply(t, e, 3, entry(3, txnCmd(OpTxnStatus, TxnArgs{Txn: t1, Anchor: []byte("p"), Status: TxnCommitted, Scans: []TxnScan{scan}})))
	if len(res[0].Conflicts) != 1 {
		t.Fatalf("commit over a phantom: %+v", res[0])
	}
	view, err := e.GetTxn([]byte("p"))
	if err != nil || view.Intent == nil || view.Intent.Record.Status != TxnPending {
		t.Fatalf("record after the refused commit: %+v, %v", view, err)
	}
	// Statuses a command must not carry are refused before they reach a range.
	for _, c := range []Command{
		txnCmd(OpTxnStatus, TxnArgs{Txn: t1, Anchor: []byte("p")}),
		txnCmd(OpTxnResolve, TxnArgs{Txn: t1, Status: TxnPending, Keys: [][]byte{[]byte("p")}}),
		txnCmd(OpTxnCommit, TxnArgs{Txn: t1, Record: rec}),
	} {
		if err := c.Validate(); err == nil {
			t.Fatalf("%s with %+v validated", c.Op, c)
		}
	}
}
