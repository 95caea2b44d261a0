package store

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/bondkv/bondkv/internal/base"
)

func randomCommands(rng *rand.Rand, n int) []Command {
	cmds := make([]Command, n)
	for i := range cmds {
		key := make([]byte, 1+rng.IntN(300))
		for j := range key {
			key[j] = byte(rng.IntN(256))
		}
		if rng.IntN(3) == 0 {
			cmds[i] = Command{Op: OpDelete, Key: key}
			continue
		}
		value := make([]byte, rng.IntN(200))
		for j := range value {
			value[j] = byte(rng.IntN(256))
		}
		cmds[i] = Command{Op: OpPut, Key: key, Value: value}
	}
	return cmds
}

func TestCommandsRoundTrip(t *testing.T) {
	for seed := uint64(0); seed < 50; seed++ {
		rng := rand.New(rand.NewPCG(seed, 1))
		cmds := randomCommands(rng, rng.IntN(40))
		prefix := []byte("prefix")
		enc := EncodeCommands(bytes.Clone(prefix), cmds)
		if !bytes.HasPrefix(enc, prefix) {
			t.Fatalf("seed %d: EncodeCommands lost dst", seed)
		}
		got, err := DecodeCommands(enc[len(prefix):])
		if err != nil {
			t.Fatalf("seed %d: decode: %v", seed, err)
		}
		if len(got) != len(cmds) {
			t.Fatalf("seed %d: %d commands, want %d", seed, len(got), len(cmds))
		}
		for i := range cmds {
			if got[i].Op != cmds[i].Op || !bytes.Equal(got[i].Key, cmds[i].Key) || !bytes.Equal(got[i].Value, cmds[i].Value) {
				t.Fatalf("seed %d: command %d = %+v, want %+v", seed, i, got[i], cmds[i])
			}
		}
		if err := ValidateCommands(cmds); err != nil {
			t.Fatalf("seed %d: validate: %v", seed, err)
		}
	}
}

func TestDecodeCommandsRejects(t *testing.T) {
	valid := EncodeCommands(nil, []Command{put("a", "1"), del("b")})
	cases := map[string][]byte{
		"empty":             nil,
		"unknown version":   {2, 0},
		"no count":          {1},
		"count too large":   {1, 5, 1, 1, 'a'},
		"unknown op":        {1, 1, 9, 1, 'a'},
		"op zero":           {1, 1, 0, 1, 'a'},
		"non-minimal count": {1, 0x81, 0x00, 2, 1, 'a'},
		"non-minimal len":   {1, 1, 2, 0x81, 0x00, 'a'},
		"key overruns":      {1, 1, 2, 5, 'a'},
		"put without value": {1, 1, 1, 1, 'a'},
		"varint overflow":   {1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
		"trailing":          append(bytes.Clone(valid), 0),
	}
	for i := 1; i < len(valid); i++ {
		cases["truncated "+strings.Repeat("x", i)] = valid[:i]
	}
	for name, b := range cases {
		cmds, err := DecodeCommands(b)
		if !errors.Is(err, base.ErrCorruption) {
			t.Errorf("%s: DecodeCommands(%x) = %v, %v; want ErrCorruption", name, b, cmds, err)
		}
	}
	// A zero-command batch is valid.
	if cmds, err := DecodeCommands(EncodeCommands(nil, nil)); err != nil || len(cmds) != 0 {
		t.Fatalf("empty batch: %v, %v", cmds, err)
	}
}

func TestValidateCommand(t *testing.T) {
	big := make([]byte, base.MaxKeySize+1)
	cases := []struct {
		c    Command
		want error
	}{
		{put("", "v"), base.ErrEmptyKey},
		{del(""), base.ErrEmptyKey},
		{Command{Op: OpPut, Key: big}, base.ErrKeyTooLarge},
		{Command{Op: OpDelete, Key: big}, base.ErrKeyTooLarge},
		{Command{Op: OpPut, Key: []byte("k"), Value: make([]byte, base.MaxValueSize+1)}, base.ErrValueTooLarge},
	}
	for _, tc := range cases {
		if err := tc.c.Validate(); !errors.Is(err, tc.want) {
			t.Errorf("%s %d-byte key: %v, want %v", tc.c.Op, len(tc.c.Key), err, tc.want)
		}
	}
	for _, c := range []Command{{Op: 7, Key: []byte("k")}, {Op: OpDelete, Key: []byte("k"), Value: []byte("v")}} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
	ok := []Command{put("k", ""), {Op: OpPut, Key: big[1:], Value: make([]byte, base.MaxValueSize)}, del("k")}
	if err := ValidateCommands(ok); err != nil {
		t.Fatal(err)
	}
}

func FuzzDecodeCommands(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{1, 0})
	f.Add(EncodeCommands(nil, []Command{put("a", "1"), del("b"), put("c", "")}))
	f.Add([]byte{1, 0x81, 0x00})
	rng := rand.New(rand.NewPCG(7, 7))
	for i := 0; i < 8; i++ {
		f.Add(EncodeCommands(nil, randomCommands(rng, 1+rng.IntN(5))))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		cmds, err := DecodeCommands(b)
		if err != nil {
			if !errors.Is(err, base.ErrCorruption) {
				t.Fatalf("error %v does not wrap ErrCorruption", err)
			}
			if cmds != nil {
				t.Fatalf("commands returned with an error")
			}
			return
		}
		// The encoding is canonical: re-encoding reproduces the input.
		if re := EncodeCommands(nil, cmds); !bytes.Equal(re, b) {
			t.Fatalf("re-encoding %x gave %x", b, re)
		}
	})
}

func TestDecodeRecordRejects(t *testing.T) {
	good := make([]byte, recordLen(3))
	putRecord(good, 42, false, []byte("abc"))
	if r, err := decodeRecord(good); err != nil || r.Version != 42 || r.Deleted || string(r.Data) != "abc" {
		t.Fatalf("decode good record: %+v, %v", r, err)
	}
	tomb := make([]byte, recordLen(0))
	putRecord(tomb, 7, true, nil)
	if r, err := decodeRecord(tomb); err != nil || r.Version != 7 || !r.Deleted || r.Data != nil {
		t.Fatalf("decode tombstone: %+v, %v", r, err)
	}
	bad := [][]byte{
		nil,
		good[:8],
		append(bytes.Clone(tomb), 'x'),        // tombstone with a value
		append(append(good[:8:8], 0x80), 'x'), // unknown flag
		make([]byte, recordLen(base.MaxValueSize+1)), // oversized value
	}
	for _, b := range bad {
		if _, err := decodeRecord(b); !errors.Is(err, base.ErrCorruption) {
			t.Errorf("decodeRecord(%d bytes) = %v, want ErrCorruption", len(b), err)
		}
	}
}
