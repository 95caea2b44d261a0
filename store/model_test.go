package store

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/bondkv/bondkv/internal/base"
)

// model is the plain-map reference: user key -> record (tombstones included).
type model map[string]Record

func (m model) apply(index uint64, cmds []Command) {
	for _, c := range cmds {
		if c.Op == OpDelete {
			m[string(c.Key)] = Record{Version: index, Deleted: true}
		} else {
			m[string(c.Key)] = Record{Version: index, Data: bytes.Clone(c.Value)}
		}
	}
}

// scan is Scan on the model.
func (m model) scan(span base.Span, limit int) []KV {
	var out []KV
	for _, k := range slices.Sorted(maps.Keys(m)) {
		r := m[k]
		if r.Deleted || !span.Contains([]byte(k)) {
			continue
		}
		out = append(out, KV{Key: []byte(k), Value: Value{Version: r.Version, Data: r.Data}})
		if limit > 0 && len(out) == limit {
			break
		}
	}
	return out
}

// randomKey draws from a small keyspace so that keys are overwritten and deleted often; some
// keys share prefixes and include 0x00 and 0xff bytes to exercise span edges.
func randomKey(rng *rand.Rand) []byte {
	k := []byte{"abcxyz"[rng.IntN(6)]}
	for n := rng.IntN(3); n > 0; n-- {
		k = append(k, []byte{0x00, 'a', 'm', 0xff}[rng.IntN(4)])
	}
	return k
}

func randomBatch(rng *rand.Rand, next *uint64) []Entry {
	entries := make([]Entry, 1+rng.IntN(4))
	for i := range entries {
		cmds := make([]Command, 1+rng.IntN(6))
		for j := range cmds {
			if rng.IntN(4) == 0 {
				cmds[j] = Command{Op: OpDelete, Key: randomKey(rng)}
			} else {
				cmds[j] = Command{Op: OpPut, Key: randomKey(rng), Value: fmt.Appendf(nil, "v%d-%d", rng.Uint32(), rng.IntN(100))}
			}
		}
		*next += 1 + uint64(rng.IntN(2)) // indices may skip (entries of other kinds)
		entries[i] = entry(*next, cmds...)
	}
	return entries
}

func randomSpan(rng *rand.Rand) base.Span {
	for {
		s := base.Span{Start: randomKey(rng)}
		switch rng.IntN(4) {
		case 0:
			s.Start = nil
		case 1:
			s.End = nil
		default:
			s.End = randomKey(rng)
		}
		if s.Valid() {
			return s
		}
	}
}

func TestModel(t *testing.T) {
	for seed := uint64(1); seed <= 10; seed++ {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) { runModel(t, seed) })
	}
}

func runModel(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	e := openMem(t)
	const id = 3
	m := model{}
	var next uint64
	for step := 0; step < 150; step++ {
		entries := randomBatch(rng, &next)
		mustApply(t, e, id, entries...)
		for _, ent := range entries {
			cmds, _ := DecodeCommands(ent.Data)
			m.apply(ent.Index, cmds)
		}
		for range 3 {
			k := randomKey(rng)
			v, err := e.Get(k)
			want, ok := m[string(k)]
			switch {
			case !ok || want.Deleted:
				if !errors.Is(err, base.ErrNotFound) {
					t.Fatalf("seed %d step %d: Get(%q) = %+v, %v; want not found", seed, step, k, v, err)
				}
			case err != nil || v.Version != want.Version || !bytes.Equal(v.Data, want.Data):
				t.Fatalf("seed %d step %d: Get(%q) = %+v, %v; want %+v", seed, step, k, v, err, want)
			}
		}
		span, limit := randomSpan(rng), rng.IntN(6)-1
		got, err := e.Scan(span, limit)
		if err != nil {
			t.Fatalf("seed %d step %d: scan: %v", seed, step, err)
		}
		if want := m.scan(span, limit); !equalKVs(got, want) {
			t.Fatalf("seed %d step %d: Scan([%q, %q), %d) =\n%s\nwant\n%s", seed, step, span.Start, span.End, limit, fmtKVs(got), fmtKVs(want))
		}
	}
	if d := diffRecords(records(t, e), m); d != "" {
		t.Fatalf("seed %d: final state differs from the model:\n%s", seed, d)
	}
}

func equalKVs(a, b []KV) bool {
	return slices.EqualFunc(a, b, func(x, y KV) bool {
		return bytes.Equal(x.Key, y.Key) && x.Value.Version == y.Value.Version && bytes.Equal(x.Value.Data, y.Value.Data)
	})
}

func fmtKVs(kvs []KV) string {
	var b bytes.Buffer
	for _, kv := range kvs {
		fmt.Fprintf(&b, "  %q@%d=%q\n", kv.Key, kv.Value.Version, kv.Value.Data)
	}
	return b.String()
}

func TestScanInvalidSpan(t *testing.T) {
	e := openMem(t)
	for _, s := range []base.Span{{Start: []byte("b"), End: []byte("a")}, {Start: []byte("a"), End: []byte("a")}, {End: []byte{}}} {
		if _, err := e.Scan(s, 0); !errors.Is(err, base.ErrInvalidRange) {
			t.Errorf("Scan([%q, %q)): %v", s.Start, s.End, err)
		}
	}
	// Scan returns owned copies.
	mustApply(t, e, 3, entry(1, put("a", "1"), put("b", "2")))
	kvs, err := e.Scan(base.FullSpan, 0)
	if err != nil || len(kvs) != 2 {
		t.Fatalf("scan: %v, %v", kvs, err)
	}
	kvs[0].Key = append(kvs[0].Key, 'x') // must not clobber the value sharing its buffer
	if string(kvs[0].Value.Data) != "1" {
		t.Fatalf("key append clobbered the value: %q", kvs[0].Value.Data)
	}
}
