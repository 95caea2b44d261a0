package store

import (
	"bytes"
	"encoding/binary"
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
		"unknown op":        {1, 1, 42, 1, 'a'},
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
	for _, c := range []Command{{Op: 42, Key: []byte("k")}, {Op: OpDelete, Key: []byte("k"), Value: []byte("v")}} {
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
	for _, cmds := range newOpCommands() {
		f.Add(EncodeCommands(nil, cmds))
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

// newOpCommands has one command of each op added for ranges, in valid single-command batches.
func newOpCommands() [][]Command {
	return [][]Command{
		{{Op: OpPutLocal, Key: []byte("l"), Value: []byte("v")}, {Op: OpDeleteLocal, Key: []byte("m")},
			{Op: OpCPutLocal, Key: []byte("n"), Value: []byte("v"), Expect: []byte("old")},
			{Op: OpCPutLocal, Key: []byte("o"), Value: []byte{}, ExpectAbsent: true},
			{Op: OpCPutLocal, Key: []byte("p"), Value: []byte("v")}, put("data", "x")},
		{SplitCommand([]byte("m"), 4, testMembers)},
		{FreezeCommand()},
		{UnfreezeCommand()},
		{MergeCommand(MergeArgs{Right: 4, RightSpan: from("m"), RightGeneration: 3, RightVersion: 99})},
		{MergeCommand(MergeArgs{Right: 5, RightSpan: sp("", "z"), RightGeneration: 0, RightVersion: 0})},
	}
}

func TestNewOpsRoundTrip(t *testing.T) {
	for _, cmds := range newOpCommands() {
		if err := ValidateCommands(cmds); err != nil {
			t.Fatalf("%v: %v", cmds, err)
		}
		enc := EncodeCommands(nil, cmds)
		got, err := DecodeCommands(enc)
		if err != nil || len(got) != len(cmds) {
			t.Fatalf("decode %v: %v, %v", cmds, got, err)
		}
		for i, c := range cmds {
			g := got[i]
			if g.Op != c.Op || !bytes.Equal(g.Key, c.Key) || !bytes.Equal(g.Value, c.Value) ||
				!bytes.Equal(g.Expect, c.Expect) || g.ExpectAbsent != c.ExpectAbsent {
				t.Fatalf("command %d = %+v, want %+v", i, g, c)
			}
		}
		if !bytes.Equal(EncodeCommands(nil, got), enc) {
			t.Fatal("re-encoding differs")
		}
	}
	a := MergeArgs{Right: 4, RightSpan: from("m"), RightGeneration: 3, RightVersion: 99}
	got, err := decodeMergeArgs(encodeMergeArgs(a))
	if err != nil || got.Right != 4 || !got.RightSpan.Equal(a.RightSpan) || got.RightGeneration != 3 || got.RightVersion != 99 {
		t.Fatalf("merge args round trip: %+v, %v", got, err)
	}
	for _, st := range []RangeState{{Span: base.NoSpan}, {Span: base.FullSpan, Frozen: true, Generation: 1, VersionBase: 1 << 60}, {Span: sp("a", "b")}} {
		got, err := decodeState(encodeState(st))
		if err != nil || !got.Equal(st) {
			t.Fatalf("state %v round trip: %v, %v", st, got, err)
		}
	}
}

func TestValidateBatches(t *testing.T) {
	putL := Command{Op: OpPutLocal, Key: []byte("l"), Value: []byte("v")}
	cput := Command{Op: OpCPutLocal, Key: []byte("l"), Value: []byte("v"), ExpectAbsent: true}
	split := SplitCommand([]byte("m"), 4, testMembers)
	for name, tc := range map[string]struct {
		cmds     []Command
		ok, excl bool
	}{
		"puts":            {[]Command{put("a", "1"), del("b")}, true, false},
		"locals":          {[]Command{putL, cput, {Op: OpDeleteLocal, Key: []byte("x")}}, true, true},
		"cput and put":    {[]Command{cput, put("a", "1")}, true, true},
		"split alone":     {[]Command{split}, true, true},
		"split and put":   {[]Command{put("a", "1"), split}, false, true},
		"two admin":       {[]Command{FreezeCommand(), UnfreezeCommand()}, false, true},
		"freeze and cput": {[]Command{FreezeCommand(), cput}, false, true},
	} {
		if err := ValidateCommands(tc.cmds); (err == nil) != tc.ok {
			t.Errorf("%s: ValidateCommands = %v", name, err)
		}
		if IsExclusive(tc.cmds) != tc.excl {
			t.Errorf("%s: IsExclusive = %v", name, !tc.excl)
		}
	}
	for name, c := range map[string]Command{
		"split id 0":          SplitCommand([]byte("m"), 0, testMembers),
		"split short id":      {Op: OpSplit, Key: []byte("m"), Value: []byte{1}},
		"split no key":        SplitCommand(nil, 4, testMembers),
		"freeze with key":     {Op: OpFreeze, Key: []byte("k")},
		"unfreeze with value": {Op: OpUnfreeze, Value: []byte("v")},
		"merge garbage":       {Op: OpMerge, Value: []byte("garbage")},
		"merge with key":      {Op: OpMerge, Key: []byte("k"), Value: MergeCommand(MergeArgs{Right: 4, RightSpan: from("m")}).Value},
		"merge right 0":       MergeCommand(MergeArgs{RightSpan: from("m")}),
		"merge empty span":    MergeCommand(MergeArgs{Right: 4, RightSpan: base.NoSpan}),
		"cput both":           {Op: OpCPutLocal, Key: []byte("k"), Expect: []byte("x"), ExpectAbsent: true},
		"expect on put":       {Op: OpPutLocal, Key: []byte("k"), Expect: []byte("x")},
		"absent on put":       {Op: OpPut, Key: []byte("k"), ExpectAbsent: true},
		"local empty key":     {Op: OpPutLocal, Value: []byte("v")},
		"local big value":     {Op: OpPutLocal, Key: []byte("k"), Value: make([]byte, base.MaxValueSize+1)},
		"delete local value":  {Op: OpDeleteLocal, Key: []byte("k"), Value: []byte("v")},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%s: valid", name)
		}
	}
	// A cput's condition marker must be 0 or 1.
	enc := EncodeCommands(nil, []Command{{Op: OpCPutLocal, Key: []byte("k"), Value: []byte("v"), ExpectAbsent: true}})
	enc[len(enc)-1] = 2
	if _, err := DecodeCommands(enc); !errors.Is(err, base.ErrCorruption) {
		t.Fatalf("bad condition marker: %v", err)
	}
	for name, b := range map[string][]byte{
		"state trailing": append(encodeState(RangeState{Span: base.FullSpan}), 0),
		"state flags":    append([]byte{stateVersion, 2}, encodeState(RangeState{Span: base.FullSpan})[2:]...),
		"state version":  append([]byte{9}, encodeState(RangeState{Span: base.FullSpan})[1:]...),
		"state inverted": encodeState(RangeState{Span: sp("b", "a")}),
		"merge trailing": append(encodeMergeArgs(MergeArgs{Right: 4, RightSpan: from("m")}), 0),
	} {
		var err error
		if name[0] == 's' {
			_, err = decodeState(b)
		} else {
			_, err = decodeMergeArgs(b)
		}
		if !errors.Is(err, base.ErrCorruption) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestSplitArgsCanonical(t *testing.T) {
	good := encodeSplitArgs(7, map[base.NodeID]string{2: "b:2", 1: "a:1"})
	id, m, err := decodeSplitArgs(good)
	if err != nil || id != 7 || len(m) != 2 || m[1] != "a:1" || m[2] != "b:2" {
		t.Fatalf("round trip: %v %v %v", id, m, err)
	}
	for name, b := range map[string][]byte{
		"truncated":  good[:len(good)-1],
		"trailing":   append(append([]byte(nil), good...), 0),
		"unsorted":   append(binary.BigEndian.AppendUint64(binary.AppendUvarint(binary.BigEndian.AppendUint64(nil, 7), 2), 2), append([]byte{1, 'x'}, append(binary.BigEndian.AppendUint64(nil, 1), 1, 'y')...)...),
		"no members": binary.BigEndian.AppendUint64(nil, 7),
	} {
		if _, _, err := decodeSplitArgs(b); !errors.Is(err, base.ErrCorruption) {
			t.Errorf("%s: %v, want corruption", name, err)
		}
	}
}
