package rpc

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	pb "github.com/lni/dragonboat/v4/raftpb"

	"github.com/bondkv/bondkv/internal/base"
)

const (
	// MaxFrameSize is the largest frame payload, in bytes, that the Raft transport sends or
	// accepts: dragonboat's largest message batch (64 MiB) plus room for the batch's own
	// framing around a maximum-size entry. Larger payloads are refused by the sender and close
	// the connection at the receiver.
	MaxFrameSize = 64<<20 + 64<<10

	frameHeaderSize = 12
	frameVersion    = 1
)

var frameMagic = [2]byte{0xB0, 0x4B}

// frameKind says what a frame's payload is.
type frameKind uint8

const (
	kindBatch frameKind = 1 // raftpb.MessageBatch
	kindChunk frameKind = 2 // raftpb.Chunk
)

func (k frameKind) String() string {
	switch k {
	case kindBatch:
		return "message batch"
	case kindChunk:
		return "snapshot chunk"
	}
	return fmt.Sprintf("kind %d", uint8(k))
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errFrameTooLarge is returned by the sender for a payload over MaxFrameSize.
var errFrameTooLarge = errors.New("rpc: frame too large")

// putFrameHeader writes the header of a frame carrying payload into h[:frameHeaderSize].
func putFrameHeader(h []byte, kind frameKind, payload []byte) {
	h[0], h[1] = frameMagic[0], frameMagic[1]
	h[2] = frameVersion
	h[3] = byte(kind)
	binary.BigEndian.PutUint32(h[4:], uint32(len(payload)))
	binary.BigEndian.PutUint32(h[8:], crc32.Checksum(payload, castagnoli))
}

// parseFrameHeader checks a header and returns the payload's kind, length and checksum.
// Every failure wraps base.ErrCorruption.
func parseFrameHeader(h []byte) (kind frameKind, size int, sum uint32, err error) {
	if h[0] != frameMagic[0] || h[1] != frameMagic[1] {
		return 0, 0, 0, fmt.Errorf("bad magic %#x%02x: %w", h[0], h[1], base.ErrCorruption)
	}
	if h[2] != frameVersion {
		return 0, 0, 0, fmt.Errorf("unknown frame version %d: %w", h[2], base.ErrCorruption)
	}
	kind = frameKind(h[3])
	if kind != kindBatch && kind != kindChunk {
		return 0, 0, 0, fmt.Errorf("unknown frame %v: %w", kind, base.ErrCorruption)
	}
	n := binary.BigEndian.Uint32(h[4:])
	if n > MaxFrameSize {
		return 0, 0, 0, fmt.Errorf("frame of %d bytes exceeds %d: %w", n, MaxFrameSize, base.ErrCorruption)
	}
	return kind, int(n), binary.BigEndian.Uint32(h[8:]), nil
}

// frameReader reads frames from one connection. It reuses its payload buffer, which is safe
// because the raftpb decoders copy every byte slice they return.
type frameReader struct {
	r   *bufio.Reader
	hdr [frameHeaderSize]byte
	buf []byte
}

// keepBuffer is the largest payload buffer a reader or writer keeps between frames; a larger
// one is dropped after use so an idle connection does not pin a snapshot-sized buffer.
const keepBuffer = 1 << 20

// next reads one frame. It waits for the frame's first byte for as long as it takes, then
// calls started, which arms a deadline for the rest of the frame. A clean end of stream
// between frames is io.EOF.
func (fr *frameReader) next(started func()) (frameKind, []byte, error) {
	if _, err := fr.r.Peek(1); err != nil {
		return 0, nil, err
	}
	started()
	if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, nil, fmt.Errorf("truncated frame header: %w", err)
		}
		return 0, nil, err
	}
	kind, n, sum, err := parseFrameHeader(fr.hdr[:])
	if err != nil {
		return 0, nil, err
	}
	if cap(fr.buf) < n {
		fr.buf = make([]byte, n)
	}
	payload := fr.buf[:n]
	if n > keepBuffer {
		fr.buf = nil
	}
	if _, err := io.ReadFull(fr.r, payload); err != nil {
		return 0, nil, fmt.Errorf("truncated %v of %d bytes: %w", kind, n, err)
	}
	if got := crc32.Checksum(payload, castagnoli); got != sum {
		return 0, nil, fmt.Errorf("%v of %d bytes: checksum %#08x, header says %#08x: %w",
			kind, n, got, sum, base.ErrCorruption)
	}
	return kind, payload, nil
}

// decodeBatch and decodeChunk turn a checked payload into a raftpb value. The decoders are
// dragonboat's; a panic inside one on hostile input is turned into a corruption error so
// that a bad peer can close its connection but never crash the node.
func decodeBatch(payload []byte) (b pb.MessageBatch, err error) {
	defer recoverDecode(&err, kindBatch)
	if err := b.Unmarshal(payload); err != nil {
		return pb.MessageBatch{}, fmt.Errorf("undecodable %v: %v: %w", kindBatch, err, base.ErrCorruption)
	}
	return b, nil
}

func decodeChunk(payload []byte) (c pb.Chunk, err error) {
	defer recoverDecode(&err, kindChunk)
	if err := c.Unmarshal(payload); err != nil {
		return pb.Chunk{}, fmt.Errorf("undecodable %v: %v: %w", kindChunk, err, base.ErrCorruption)
	}
	return c, nil
}

func recoverDecode(err *error, kind frameKind) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("undecodable %v: decoder panicked: %v: %w", kind, r, base.ErrCorruption)
	}
}
