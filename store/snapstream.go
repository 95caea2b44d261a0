package store

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"

	"github.com/bondkv/bondkv/internal/base"
)

// The snapshot stream format (see doc.go for the overview). Integers are big-endian unless they
// are lengths, which are minimal uvarints.
//
//	magic    8 bytes "bondkvSS"
//	version  uint16 (2)
//	rangeID  uint64
//	applied  uint64
//	start    uvarint length | bytes            Start of the range's span (from its state)
//	end      byte 0 (unbounded) | byte 1, uvarint length | bytes
//	records  repeated: byte 1 | uvarint keyLen | engine key | uvarint valueLen | value
//	trailer  byte 0 | uint64 record count | SHA-256 of every preceding byte of the stream
//
// Records are the engine keys of the range's data span, intent span and range-local span,
// strictly ascending (d/ < i/ < r/), except the applied-index key, whose value is the header's
// applied index. The range-local span holds the range's state, whose span must equal the
// header's (base.NoSpan: no data or intent records at all), and range-local records
// (r/<id>/u/...), which must decode as value records. The stream is canonical: exactly one byte
// sequence describes a given state. Version 1 streams (before range states) are not accepted.
const (
	snapshotMagic   = "bondkvSS"
	snapshotVersion = 2

	tagEnd    = 0
	tagRecord = 1

	// maxRangeLocalKey bounds a range-local key in a stream.
	maxRangeLocalKey = 64 << 10
	// maxStreamValue bounds one value in a stream (range-local records, intents). A value
	// record is further bounded by base.MaxValueSize.
	maxStreamValue = 64 << 20
	// readChunk is how much the reader allocates ahead of data actually received, so that a
	// corrupt length cannot make it allocate much more than the stream holds.
	readChunk = 1 << 20
)

// SnapshotMismatchError is returned by RecoverSnapshot for a well-formed stream of another
// range. Nothing is changed. (The span is not compared: a snapshot brings the sender's span.)
type SnapshotMismatchError struct {
	WantID, GotID base.RangeID
}

func (e *SnapshotMismatchError) Error() string {
	return fmt.Sprintf("store: snapshot is of range %d, not range %d", e.GotID, e.WantID)
}

// snapshotWriter writes a snapshot stream. Errors are sticky: check err after finish.
type snapshotWriter struct {
	hw    hashWriter
	bw    *bufio.Writer
	count uint64
	err   error
	tmp   [binary.MaxVarintLen64]byte
}

// hashWriter counts and hashes what it passes to w.
type hashWriter struct {
	w io.Writer
	h hash.Hash
	n int64
}

func (h *hashWriter) Write(p []byte) (int, error) {
	n, err := h.w.Write(p)
	h.h.Write(p[:n])
	h.n += int64(n)
	return n, err
}

func newSnapshotWriter(w io.Writer, id base.RangeID, span base.Span, applied uint64) *snapshotWriter {
	s := &snapshotWriter{hw: hashWriter{w: w, h: sha256.New()}}
	s.bw = bufio.NewWriterSize(&s.hw, 64<<10)
	var hdr [8 + 2 + 8 + 8]byte
	copy(hdr[:], snapshotMagic)
	binary.BigEndian.PutUint16(hdr[8:], snapshotVersion)
	binary.BigEndian.PutUint64(hdr[10:], uint64(id))
	binary.BigEndian.PutUint64(hdr[18:], applied)
	s.write(hdr[:])
	s.bytes(span.Start)
	if span.End == nil {
		s.writeByte(0)
	} else {
		s.writeByte(1)
		s.bytes(span.End)
	}
	return s
}

func (s *snapshotWriter) write(p []byte) {
	if s.err == nil {
		_, s.err = s.bw.Write(p)
	}
}

func (s *snapshotWriter) writeByte(c byte) {
	if s.err == nil {
		s.err = s.bw.WriteByte(c)
	}
}

func (s *snapshotWriter) bytes(p []byte) {
	s.write(binary.AppendUvarint(s.tmp[:0], uint64(len(p))))
	s.write(p)
}

func (s *snapshotWriter) record(k, v []byte) error {
	s.writeByte(tagRecord)
	s.bytes(k)
	s.bytes(v)
	s.count++
	return s.err
}

// finish writes the trailer and flushes; it returns the stream's length.
func (s *snapshotWriter) finish() (int64, error) {
	var t [9]byte
	t[0] = tagEnd
	binary.BigEndian.PutUint64(t[1:], s.count)
	s.write(t[:])
	if s.err == nil {
		s.err = s.bw.Flush()
	}
	if s.err == nil {
		var n int
		n, s.err = s.hw.w.Write(s.hw.h.Sum(nil))
		s.hw.n += int64(n)
	}
	return s.hw.n, s.err
}

// readSnapshot reads and validates a whole snapshot stream of range id, calling begin with the
// header's span before any record (nil begin: skipped), then set for each record in order, and
// returns the header's applied index and the range state the stream carries. The caller must
// not act on the records before readSnapshot returns nil: only then is the stream known to be
// complete and intact. Structural problems, a truncated stream, a missing state or one whose
// span differs from the header's, and a checksum mismatch wrap base.ErrCorruption; a stream of
// another range is a *SnapshotMismatchError; errors of r (other than a premature EOF), begin
// and set are returned wrapped.
func readSnapshot(r io.Reader, id base.RangeID, begin func(span base.Span) error, set func(k, v []byte) error) (uint64, RangeState, error) {
	var st RangeState
	sr := &snapshotReader{br: bufio.NewReaderSize(r, 64<<10), h: sha256.New()}
	var hdr [8 + 2 + 8 + 8]byte
	if err := sr.full(hdr[:]); err != nil {
		return 0, st, err
	}
	if string(hdr[:8]) != snapshotMagic {
		return 0, st, corruptf("snapshot: bad magic %q", hdr[:8])
	}
	if v := binary.BigEndian.Uint16(hdr[8:]); v != snapshotVersion {
		return 0, st, corruptf("snapshot: unknown format version %d", v)
	}
	gotID := base.RangeID(binary.BigEndian.Uint64(hdr[10:]))
	applied := binary.BigEndian.Uint64(hdr[18:])
	var got base.Span
	start, err := sr.bytes(nil, base.MaxKeySize)
	if err != nil {
		return 0, st, err
	}
	got.Start = start
	switch hasEnd, err := sr.ReadByte(); {
	case err != nil:
		return 0, st, err
	case hasEnd == 1:
		if got.End, err = sr.bytes([]byte{}, base.MaxKeySize); err != nil {
			return 0, st, err
		}
	case hasEnd != 0:
		return 0, st, corruptf("snapshot: bad span end marker %d", hasEnd)
	}
	if gotID != id {
		return 0, st, &SnapshotMismatchError{WantID: id, GotID: gotID}
	}
	if got.Empty() && !got.Equal(base.NoSpan) {
		return 0, st, corruptf("snapshot: empty span %s is not base.NoSpan", got)
	}
	if begin != nil {
		if err := begin(got); err != nil {
			return 0, st, err
		}
	}

	bounds := snapshotSpans(id, got)
	appliedKey := base.AppliedIndexKey(id)
	stateKey := base.StateKey(id)
	localRecords := base.LocalUserPrefix(id)
	hasState := false
	var key, prev, value []byte
	var count uint64
	for {
		tag, err := sr.ReadByte()
		if err != nil {
			return 0, st, err
		}
		if tag == tagEnd {
			break
		}
		if tag != tagRecord {
			return 0, st, corruptf("snapshot: bad record tag %d after %d records", tag, count)
		}
		if key, err = sr.bytes(key[:0], maxRangeLocalKey); err != nil {
			return 0, st, err
		}
		if count > 0 && bytes.Compare(key, prev) <= 0 {
			return 0, st, corruptf("snapshot: record %d: key %q not after %q", count, key, prev)
		}
		kind := bounds.kind(key)
		if kind == spanNone || bytes.Equal(key, appliedKey) {
			return 0, st, corruptf("snapshot: record %d: key %q outside range %d", count, key, id)
		}
		if kind != spanLocal {
			if err := base.CheckKey(key[2:]); err != nil {
				return 0, st, corruptf("snapshot: record %d: %v", count, err)
			}
		}
		if value, err = sr.bytes(value[:0], maxStreamValue); err != nil {
			return 0, st, err
		}
		switch {
		case kind == spanData || (kind == spanLocal && bytes.HasPrefix(key, localRecords)):
			if _, err := decodeRecord(value); err != nil {
				return 0, st, fmt.Errorf("snapshot: record %d: %w", count, err)
			}
		case bytes.Equal(key, stateKey):
			if st, err = decodeState(value); err != nil {
				return 0, st, fmt.Errorf("snapshot: record %d: %w", count, err)
			}
			if !st.Span.Equal(got) {
				return 0, st, corruptf("snapshot: state span %s differs from the header's %s", st.Span, got)
			}
			hasState = true
		}
		if err := set(key, value); err != nil {
			return 0, st, err
		}
		prev, key = key, prev
		count++
	}
	var tr [8]byte
	if err := sr.full(tr[:]); err != nil {
		return 0, st, err
	}
	if !hasState {
		return 0, st, corruptf("snapshot: no range state")
	}
	if n := binary.BigEndian.Uint64(tr[:]); n != count {
		return 0, st, corruptf("snapshot: trailer counts %d records, stream has %d", n, count)
	}
	want := sr.h.Sum(nil)
	var sum [sha256.Size]byte
	if _, err := io.ReadFull(sr.br, sum[:]); err != nil {
		return 0, st, sr.readErr(err)
	}
	if !bytes.Equal(sum[:], want) {
		return 0, st, corruptf("snapshot: checksum mismatch")
	}
	if _, err := sr.br.ReadByte(); err != io.EOF {
		if err != nil {
			return 0, st, fmt.Errorf("snapshot: %w", err)
		}
		return 0, st, corruptf("snapshot: trailing data after the checksum")
	}
	return applied, st, nil
}

// snapshotReader reads fields of a stream, hashing every byte it consumes.
type snapshotReader struct {
	br  *bufio.Reader
	h   hash.Hash
	n   int64 // bytes consumed
	one [1]byte
}

func (s *snapshotReader) readErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return corruptf("snapshot: truncated after %d bytes", s.n)
	}
	return fmt.Errorf("snapshot: read: %w", err)
}

func (s *snapshotReader) ReadByte() (byte, error) {
	c, err := s.br.ReadByte()
	if err != nil {
		return 0, s.readErr(err)
	}
	s.one[0] = c
	s.h.Write(s.one[:])
	s.n++
	return c, nil
}

func (s *snapshotReader) full(p []byte) error {
	n, err := io.ReadFull(s.br, p)
	s.h.Write(p[:n])
	s.n += int64(n)
	if err != nil {
		return s.readErr(err)
	}
	return nil
}

// uvarint reads a minimally encoded uvarint.
func (s *snapshotReader) uvarint() (uint64, error) {
	var v uint64
	for i := 0; i < binary.MaxVarintLen64; i++ {
		c, err := s.ReadByte()
		if err != nil {
			return 0, err
		}
		if i == binary.MaxVarintLen64-1 && c > 1 {
			break // overflow
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			if c == 0 && i > 0 {
				return 0, corruptf("snapshot: non-minimal uvarint at byte %d", s.n)
			}
			return v, nil
		}
	}
	return 0, corruptf("snapshot: uvarint overflow at byte %d", s.n)
}

// bytes reads a length-prefixed string of at most max bytes, appending to dst. Memory grows
// with the data received, not with the announced length.
func (s *snapshotReader) bytes(dst []byte, max uint64) ([]byte, error) {
	n, err := s.uvarint()
	if err != nil {
		return nil, err
	}
	if n > max {
		return nil, corruptf("snapshot: length %d at byte %d exceeds %d", n, s.n, max)
	}
	for left := int(n); left > 0; {
		c := min(left, readChunk)
		m := len(dst)
		dst = slices.Grow(dst, c)[:m+c]
		if err := s.full(dst[m:]); err != nil {
			return nil, err
		}
		left -= c
	}
	return dst, nil
}

// Which of a range's spans an engine key is in.
const (
	spanNone = iota
	spanData
	spanIntent
	spanLocal
)

// rangeSpans are the engine-key bounds of everything a range owns, in key order.
type rangeSpans struct {
	dataStart, dataEnd     []byte
	intentStart, intentEnd []byte
	localStart, localEnd   []byte
}

func snapshotSpans(id base.RangeID, span base.Span) rangeSpans {
	var r rangeSpans
	r.dataStart, r.dataEnd = base.DataSpan(span)
	r.intentStart, r.intentEnd = base.IntentSpan(span)
	r.localStart, r.localEnd = base.RangeLocalSpan(id)
	return r
}

// all returns the data, intent and range-local spans, in key order, leaving out the data and
// intent spans of an empty user span (pebble is never handed a range with equal bounds).
func (r rangeSpans) all() [][2][]byte {
	out := make([][2][]byte, 0, 3)
	for _, sp := range [][2][]byte{{r.dataStart, r.dataEnd}, {r.intentStart, r.intentEnd}, {r.localStart, r.localEnd}} {
		if bytes.Compare(sp[0], sp[1]) < 0 {
			out = append(out, sp)
		}
	}
	return out
}

func (r *rangeSpans) kind(k []byte) int {
	in := func(start, end []byte) bool { return bytes.Compare(k, start) >= 0 && bytes.Compare(k, end) < 0 }
	switch {
	case in(r.dataStart, r.dataEnd):
		return spanData
	case in(r.intentStart, r.intentEnd):
		return spanIntent
	case in(r.localStart, r.localEnd):
		return spanLocal
	}
	return spanNone
}
