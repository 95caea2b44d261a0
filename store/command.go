package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/bondkv/bondkv/internal/base"
)

// Op is the kind of a replicated command.
type Op uint8

// Command kinds. The numbers are part of the replicated encoding; never reuse one.
const (
	// OpPut writes Value under the user key Key.
	OpPut Op = 1
	// OpDelete deletes the user key Key, leaving a tombstone that carries the deletion's version.
	OpDelete Op = 2
	// OpPutLocal writes Value under the range-local record key Key (r/<id>/u/<Key>).
	OpPutLocal Op = 3
	// OpDeleteLocal leaves a tombstone under the range-local record key Key.
	OpDeleteLocal Op = 4
	// OpCPutLocal is OpPutLocal only if the record's current value equals Expect (ExpectAbsent:
	// only if it is absent or deleted). If a condition of an entry fails, nothing of the entry is
	// written (ResultConditionFailed).
	OpCPutLocal Op = 5
	// OpSplit splits the range at the user key Key; Value is the new right range's ID (8 bytes
	// big-endian) followed by the new range's initial voters (SplitCommand). Admin op.
	OpSplit Op = 6
	// OpFreeze freezes the range: later entries that write are refused. Admin op.
	OpFreeze Op = 7
	// OpUnfreeze lifts a freeze. Admin op.
	OpUnfreeze Op = 8
	// OpMerge merges the right neighbour into the range; Value is encoded MergeArgs
	// (MergeCommand). Admin op.
	OpMerge Op = 9
	// OpTxnCommit commits a transaction whose keys all lie in the range in one step (1PC):
	// Value is encoded TxnArgs (Txn, Reads, Scans, Writes). If a read's version changed, a
	// scan's digest changed, or another transaction's intent holds a key it reads (a write
	// intent) or writes (any intent), the command writes nothing and its conflict is in
	// Result.Conflicts (the entry's other commands are not affected).
	OpTxnCommit Op = 10
	// OpTxnPrepare is the range's part of a distributed transaction's first phase: the same
	// checks as OpTxnCommit (intents of the same transaction do not conflict, and a read key
	// held by anyone else's intent does), then an intent on every written key (Writes) and a
	// lock on every read key (Locks), and the transaction's record (Record) on the anchor's
	// intent when the range holds Anchor.
	OpTxnPrepare Op = 11
	// OpTxnStatus changes the status of the record on Anchor's intent from pending to Status
	// (the commit point, or an abort); already at Status is a no-op, anything else a conflict.
	// A commit also checks Scans (spans of this range the transaction scanned) again, so no
	// insert lands in them between the prepare and the commit point.
	OpTxnStatus Op = 12
	// OpTxnResolve removes transaction Txn's intents on Keys, applying the writes first when
	// Status is TxnCommitted. Keys without an intent of Txn are skipped.
	OpTxnResolve Op = 13
	// OpMergeValue combines Value (a MergeFunc byte, then the operand) into the user key Key's
	// value with a built-in merge function (see MergeFunc). A key held by another
	// transaction's intent is skipped like an OpPut's.
	OpMergeValue Op = 14
)

func (op Op) String() string {
	switch op {
	case OpPut:
		return "put"
	case OpDelete:
		return "delete"
	case OpPutLocal:
		return "put-local"
	case OpDeleteLocal:
		return "delete-local"
	case OpCPutLocal:
		return "cput-local"
	case OpSplit:
		return "split"
	case OpFreeze:
		return "freeze"
	case OpUnfreeze:
		return "unfreeze"
	case OpMerge:
		return "merge"
	case OpTxnCommit:
		return "txn-commit"
	case OpTxnPrepare:
		return "txn-prepare"
	case OpTxnStatus:
		return "txn-status"
	case OpTxnResolve:
		return "txn-resolve"
	case OpMergeValue:
		return "merge-value"
	}
	return fmt.Sprintf("op(%d)", uint8(op))
}

// known reports whether op is a command kind this version knows.
func (op Op) known() bool { return op >= OpPut && op <= OpMergeValue }

// txn reports a transaction command. Its checks failing skip it alone (a Conflict in the
// entry's Result), so it shares entries with other writers' commands.
func (op Op) txn() bool { return op >= OpTxnCommit && op <= OpTxnResolve }

// alone reports whether op must be the only command of its entry.
func (op Op) alone() bool { return op.admin() }

// admin reports whether op changes the range itself (split, freeze, unfreeze, merge). An admin
// command must be alone in its entry.
func (op Op) admin() bool { return op >= OpSplit && op <= OpMerge }

// local reports whether op writes a range-local record.
func (op Op) local() bool { return op == OpPutLocal || op == OpDeleteLocal || op == OpCPutLocal }

// hasValue reports whether op's encoding carries a value.
func (op Op) hasValue() bool {
	switch op {
	case OpPut, OpPutLocal, OpCPutLocal, OpSplit, OpMerge, OpMergeValue:
		return true
	}
	return op.txn()
}

// Command is one replicated command. Key is a user key (OpPut, OpDelete, the split key of
// OpSplit) or a range-local record key (the local ops), without any engine prefix. Which fields
// an op uses is documented with the op; the others must be empty.
type Command struct {
	Op    Op
	Key   []byte
	Value []byte
	// Expect and ExpectAbsent are the condition of an OpCPutLocal.
	Expect       []byte
	ExpectAbsent bool
}

// SplitCommand returns the command that splits a range at the user key key, giving the keys
// from key on to a new range newID whose Raft group starts with members (node → address; the
// nodes that apply the split and are among them start it).
func SplitCommand(key []byte, newID base.RangeID, members map[base.NodeID]string) Command {
	return Command{Op: OpSplit, Key: key, Value: encodeSplitArgs(newID, members)}
}

// FreezeCommand returns the command that freezes a range (before it is merged into its left
// neighbour).
func FreezeCommand() Command { return Command{Op: OpFreeze} }

// UnfreezeCommand returns the command that lifts a freeze (an abandoned merge).
func UnfreezeCommand() Command { return Command{Op: OpUnfreeze} }

// MergeCommand returns the command, applied to the left range, that merges the right range
// described by a into it.
func MergeCommand(a MergeArgs) Command { return Command{Op: OpMerge, Value: encodeMergeArgs(a)} }

// commandsVersion is the first byte of every encoded command batch.
const commandsVersion byte = 1

// Validate checks what Apply checks of a command on its own before it writes: a known op, the
// fields the op uses within limits (base.CheckKey on keys, base.CheckValue on values) and the
// others empty. Proposers call it (through ValidateCommands) so that bad input fails before it
// reaches consensus.
func (c Command) Validate() error {
	if !c.Op.known() {
		return fmt.Errorf("store: unknown op %d", uint8(c.Op))
	}
	if c.Op != OpCPutLocal && (len(c.Expect) != 0 || c.ExpectAbsent) {
		return fmt.Errorf("store: a %s has no condition", c.Op)
	}
	switch c.Op {
	case OpFreeze, OpUnfreeze, OpMerge, OpTxnCommit, OpTxnPrepare, OpTxnStatus, OpTxnResolve:
		if len(c.Key) != 0 {
			return fmt.Errorf("store: a %s carries no key", c.Op)
		}
	default:
		if err := base.CheckKey(c.Key); err != nil {
			return err
		}
	}
	if !c.Op.hasValue() && len(c.Value) != 0 {
		return fmt.Errorf("store: a %s carries no value", c.Op)
	}
	switch c.Op {
	case OpPut, OpPutLocal:
		return base.CheckValue(c.Value)
	case OpCPutLocal:
		if err := base.CheckValue(c.Value); err != nil {
			return err
		}
		if c.ExpectAbsent && len(c.Expect) != 0 {
			return errors.New("store: a cput expecting absence carries an expected value")
		}
		if err := base.CheckValue(c.Expect); err != nil {
			return fmt.Errorf("expected value: %w", err)
		}
	case OpSplit:
		newID, _, err := decodeSplitArgs(c.Value)
		if err != nil {
			return fmt.Errorf("store: %w: split: %w", base.ErrInvalidRange, err)
		}
		if newID == 0 {
			return fmt.Errorf("store: %w: split: new range id 0", base.ErrInvalidRange)
		}
	case OpMerge:
		a, err := decodeMergeArgs(c.Value)
		if err != nil {
			return err
		}
		return a.validate()
	case OpTxnCommit, OpTxnPrepare, OpTxnStatus, OpTxnResolve:
		a, err := DecodeTxnArgs(c.Value)
		if err != nil {
			return err
		}
		switch {
		case (c.Op == OpTxnStatus || c.Op == OpTxnResolve) && a.Status != TxnCommitted && a.Status != TxnAborted:
			return fmt.Errorf("store: %w: a %s to status %d", base.ErrInvalidRange, c.Op, a.Status)
		case c.Op == OpTxnStatus && len(a.Anchor) == 0:
			return fmt.Errorf("store: %w: a %s without an anchor", base.ErrInvalidRange, c.Op)
		case a.Record != nil && (c.Op != OpTxnPrepare || a.Record.Status != TxnPending):
			return fmt.Errorf("store: %w: a %s carrying a %s record", base.ErrInvalidRange, c.Op, a.Record.Status)
		}
		return nil
	case OpMergeValue:
		if len(c.Value) == 0 || !MergeFunc(c.Value[0]).known() {
			return fmt.Errorf("store: %w: merge with no known merge function", base.ErrInvalidRange)
		}
		return base.CheckValue(c.Value[1:])
	}
	return nil
}

// ValidateCommands validates each command (the error names the first bad one) and the batch: an
// admin command (split, freeze, unfreeze, merge) must be the only command of its batch.
func ValidateCommands(cmds []Command) error {
	for i, c := range cmds {
		if err := c.Validate(); err != nil {
			return fmt.Errorf("command %d (%s): %w", i, c.Op, err)
		}
		if c.Op.alone() && len(cmds) > 1 {
			return fmt.Errorf("command %d (%s): store: an admin or transaction command must be alone in its batch, not one of %d", i, c.Op, len(cmds))
		}
	}
	return nil
}

// IsExclusive reports whether the batch must be proposed on its own, not merged with other
// writers' commands: it holds an admin command or an OpCPutLocal (whose condition failing would
// fail the other writers' commands too).
func IsExclusive(cmds []Command) bool {
	for _, c := range cmds {
		if c.Op.alone() || c.Op == OpCPutLocal {
			return true
		}
	}
	return false
}

// EncodeCommands appends the encoding of cmds to dst and returns the extended slice:
//
//	version byte (1) | count uvarint | count × command
//	command: op byte | keyLen uvarint | key | [valueLen uvarint | value] | [condition]
//	condition (OpCPutLocal only): 1 (expect absent) | 0, expectLen uvarint | expect
//
// The key part is always present (empty for freeze, unfreeze and merge); the value part is
// present for put, put-local, cput-local, split and merge. There is no checksum: Raft checksums
// its entries. EncodeCommands does not validate; call ValidateCommands first. A command with an
// unknown op is encoded with its key only and will be rejected by DecodeCommands.
func EncodeCommands(dst []byte, cmds []Command) []byte {
	n := 1 + uvarintLen(uint64(len(cmds)))
	for _, c := range cmds {
		n += 1 + uvarintLen(uint64(len(c.Key))) + len(c.Key)
		if c.Op.hasValue() {
			n += uvarintLen(uint64(len(c.Value))) + len(c.Value)
		}
		if c.Op == OpCPutLocal {
			n += 1 + uvarintLen(uint64(len(c.Expect))) + len(c.Expect)
		}
	}
	dst = slices.Grow(dst, n)
	dst = append(dst, commandsVersion)
	dst = binary.AppendUvarint(dst, uint64(len(cmds)))
	for _, c := range cmds {
		dst = append(dst, byte(c.Op))
		dst = binary.AppendUvarint(dst, uint64(len(c.Key)))
		dst = append(dst, c.Key...)
		if c.Op.hasValue() {
			dst = binary.AppendUvarint(dst, uint64(len(c.Value)))
			dst = append(dst, c.Value...)
		}
		if c.Op == OpCPutLocal {
			if c.ExpectAbsent {
				dst = append(dst, 1)
			} else {
				dst = append(dst, 0)
				dst = binary.AppendUvarint(dst, uint64(len(c.Expect)))
				dst = append(dst, c.Expect...)
			}
		}
	}
	return dst
}

// DecodeCommands decodes the output of EncodeCommands. The commands' Key and Value alias b.
// Input that is empty, truncated, of an unknown version, with an unknown op, a non-minimal
// length or trailing bytes is rejected with an error wrapping base.ErrCorruption; the encoding
// is canonical, so EncodeCommands(nil, cmds) reproduces b exactly. DecodeCommands never panics.
// It checks structure only: key and value limits are checked by Command.Validate.
func DecodeCommands(b []byte) ([]Command, error) {
	cmds, err := decodeCommands(nil, b)
	if err != nil {
		return nil, fmt.Errorf("store: decode commands: %w", err)
	}
	return cmds, nil
}

// decodeCommands is DecodeCommands appending to dst (so Apply can reuse a slice). On error the
// returned slice holds what was decoded before the error.
func decodeCommands(dst []Command, b []byte) ([]Command, error) {
	if len(b) == 0 {
		return dst, corruptf("empty")
	}
	if b[0] != commandsVersion {
		return dst, corruptf("unknown version %d", b[0])
	}
	d := decoder{b: b, off: 1}
	count, err := d.uvarint()
	if err != nil {
		return dst, err
	}
	// Every command takes at least two bytes (op, key length): bound count before allocating.
	if count > uint64(len(b)-d.off)/2 {
		return dst, corruptf("count %d exceeds the %d bytes left", count, len(b)-d.off)
	}
	if cap(dst)-len(dst) < int(count) {
		dst = append(make([]Command, 0, len(dst)+int(count)), dst...)
	}
	for i := uint64(0); i < count; i++ {
		op := Op(d.byte())
		if d.err != nil {
			return dst, d.err
		}
		if !op.known() {
			return dst, corruptf("command %d: unknown op %d", i, uint8(op))
		}
		c := Command{Op: op, Key: d.bytes()}
		if op.hasValue() {
			c.Value = d.bytes()
		}
		if op == OpCPutLocal {
			switch absent := d.byte(); {
			case d.err != nil:
			case absent == 1:
				c.ExpectAbsent = true
			case absent == 0:
				c.Expect = d.bytes()
			default:
				return dst, corruptf("command %d: bad condition marker %d", i, absent)
			}
		}
		if d.err != nil {
			return dst, fmt.Errorf("command %d: %w", i, d.err)
		}
		dst = append(dst, c)
	}
	if d.off != len(b) {
		return dst, corruptf("%d trailing bytes", len(b)-d.off)
	}
	return dst, nil
}

// decoder reads canonical fields from a byte slice; the first error sticks.
type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if d.off >= len(d.b) {
		d.err = corruptf("truncated at byte %d", d.off)
		return 0
	}
	c := d.b[d.off]
	d.off++
	return c
}

// uvarint reads a minimally encoded uvarint.
func (d *decoder) uvarint() (uint64, error) {
	if d.err != nil {
		return 0, d.err
	}
	v, n := binary.Uvarint(d.b[d.off:])
	switch {
	case n == 0:
		d.err = corruptf("truncated at byte %d", d.off)
	case n < 0:
		d.err = corruptf("uvarint overflow at byte %d", d.off)
	case n != uvarintLen(v):
		d.err = corruptf("non-minimal uvarint at byte %d", d.off)
	default:
		d.off += n
	}
	return v, d.err
}

// bytes reads a length-prefixed byte string, aliasing d.b.
func (d *decoder) bytes() []byte {
	n, err := d.uvarint()
	if err != nil {
		return nil
	}
	if n > uint64(len(d.b)-d.off) {
		d.err = corruptf("length %d at byte %d exceeds the %d bytes left", n, d.off, len(d.b)-d.off)
		return nil
	}
	out := d.b[d.off : d.off+int(n) : d.off+int(n)]
	d.off += int(n)
	return out
}

// uvarintLen is the length of the minimal uvarint encoding of v.
func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// corruptf returns an error wrapping base.ErrCorruption.
func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", base.ErrCorruption, fmt.Sprintf(format, args...))
}
