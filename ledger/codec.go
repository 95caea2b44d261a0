package ledger

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/bondkv/bondkv/internal/base"
)

// Limits of the canonical encoding. They bound what a decoder allocates for hostile input.
const (
	// MaxStringSize is the largest byte string (key, actor ID, locality) in an entry.
	MaxStringSize = base.MaxKeySize
	// MaxSetSize is the largest number of members of a set in an entry.
	MaxSetSize = 1 << 12
)

// ErrInvalidEntry is returned by Encode for an entry that has no canonical encoding (a zero
// range, an unsorted set, an oversized key, …). Decoding such bytes returns base.ErrCorruption.
var ErrInvalidEntry = errors.New("bondkv: ledger: invalid entry")

// encoder appends the canonical encoding: big-endian fixed-width integers, u32-length-prefixed
// byte strings, u32-count-prefixed sets.
type encoder struct{ b []byte }

func (e *encoder) u8(v uint8)     { e.b = append(e.b, v) }
func (e *encoder) u16(v uint16)   { e.b = binary.BigEndian.AppendUint16(e.b, v) }
func (e *encoder) u32(v uint32)   { e.b = binary.BigEndian.AppendUint32(e.b, v) }
func (e *encoder) u64(v uint64)   { e.b = binary.BigEndian.AppendUint64(e.b, v) }
func (e *encoder) hash(h Hash)    { e.b = append(e.b, h[:]...) }
func (e *encoder) bytes(b []byte) { e.u32(uint32(len(b))); e.b = append(e.b, b...) }
func (e *encoder) str(s string)   { e.u32(uint32(len(s))); e.b = append(e.b, s...) }
func (e *encoder) boolean(v bool) {
	if v {
		e.u8(1)
	} else {
		e.u8(0)
	}
}
func (e *encoder) strings(set []string) {
	e.u32(uint32(len(set)))
	for _, s := range set {
		e.str(s)
	}
}

// decoder reads the canonical encoding. The first problem sticks in err; later reads return
// zero values, so a decode function reads all its fields and checks err once.
type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("offset %d: %s", d.off, fmt.Sprintf(format, args...))
	}
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || len(d.b)-d.off < n {
		d.fail("need %d bytes, %d left", n, len(d.b)-d.off)
		return nil
	}
	b := d.b[d.off : d.off+n]
	d.off += n
	return b
}

func (d *decoder) u8() uint8 {
	if b := d.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (d *decoder) u16() uint16 {
	if b := d.take(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if b := d.take(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (d *decoder) u64() uint64 {
	if b := d.take(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

func (d *decoder) hash() (h Hash) {
	if b := d.take(HashSize); b != nil {
		copy(h[:], b)
	}
	return h
}

func (d *decoder) boolean() bool {
	switch v := d.u8(); v {
	case 0:
		return false
	case 1:
		return true
	default:
		d.fail("boolean is %d, not 0 or 1", v)
		return false
	}
}

// bytes reads a length-prefixed byte string of at most MaxStringSize bytes and returns a copy.
func (d *decoder) bytes() []byte {
	n := d.u32()
	if d.err == nil && n > MaxStringSize {
		d.fail("string of %d bytes exceeds %d", n, MaxStringSize)
	}
	b := d.take(int(n))
	if b == nil {
		return nil
	}
	return bytes.Clone(b)
}

func (d *decoder) str() string { return string(d.bytes()) }

// count reads a set's member count and checks that at least min bytes per member remain.
func (d *decoder) count(min int) int {
	n := d.u32()
	if d.err != nil {
		return 0
	}
	if n > MaxSetSize {
		d.fail("set of %d members exceeds %d", n, MaxSetSize)
		return 0
	}
	if int(n)*min > len(d.b)-d.off {
		d.fail("set of %d members cannot fit in %d bytes", n, len(d.b)-d.off)
		return 0
	}
	return int(n)
}

func (d *decoder) strings() []string {
	n := d.count(4)
	if n == 0 {
		return nil
	}
	set := make([]string, 0, n)
	for range n {
		set = append(set, d.str())
	}
	return set
}

// finish reports the first decode problem, or trailing bytes, wrapped in base.ErrCorruption.
func (d *decoder) finish(what string) error {
	if d.err == nil && d.off != len(d.b) {
		d.fail("%d trailing bytes", len(d.b)-d.off)
	}
	if d.err != nil {
		return fmt.Errorf("ledger: decode %s: %v: %w", what, d.err, base.ErrCorruption)
	}
	return nil
}

// checkStrings checks that set is strictly increasing (sorted, no duplicates) and that every
// member is non-empty and at most MaxStringSize bytes.
func checkStrings(what string, set []string) error {
	if len(set) > MaxSetSize {
		return fmt.Errorf("%s: %d members exceeds %d", what, len(set), MaxSetSize)
	}
	for i, s := range set {
		if err := checkString(what, s); err != nil {
			return err
		}
		if i > 0 && set[i-1] >= s {
			return fmt.Errorf("%s: members not strictly increasing at %d (%q, %q)", what, i, set[i-1], s)
		}
	}
	return nil
}

func checkString(what, s string) error {
	if len(s) == 0 {
		return fmt.Errorf("%s: empty", what)
	}
	if len(s) > MaxStringSize {
		return fmt.Errorf("%s: %d bytes exceeds %d", what, len(s), MaxStringSize)
	}
	return nil
}
