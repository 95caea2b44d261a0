package store

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/bondkv/bondkv/internal/base"
)

func openBench(b *testing.B) *Engine {
	b.Helper()
	e, err := Open(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.Close() })
	mustInit(b, e, 3, base.FullSpan)
	return e
}

// BenchmarkApply applies one entry of 64 puts of 100-byte values per iteration (no fsync, as
// the state machine does between Syncs).
func BenchmarkApply(b *testing.B) {
	e := openBench(b)
	value := make([]byte, 100)
	cmds := make([]Command, 64)
	for i := range cmds {
		cmds[i] = Command{Op: OpPut, Value: value}
	}
	entries := make([]Entry, 1)
	var data []byte
	b.ReportAllocs()
	b.SetBytes(64 * 100)
	var index uint64
	for b.Loop() {
		index++
		for i := range cmds {
			cmds[i].Key = strconv.AppendUint(append(cmds[i].Key[:0], "key-"...), (index*64+uint64(i))%100000, 10)
		}
		data = EncodeCommands(data[:0], cmds)
		entries[0] = Entry{Index: index, Data: data}
		if _, err := e.Apply(3, entries); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGet reads random keys of 10,000 100-byte values.
func BenchmarkGet(b *testing.B) {
	e := openBench(b)
	const n = 10000
	value := make([]byte, 100)
	var cmds []Command
	for i := range n {
		cmds = append(cmds, Command{Op: OpPut, Key: fmt.Appendf(nil, "key-%08d", i), Value: value})
	}
	if _, err := e.Apply(3, []Entry{{Index: 1, Data: EncodeCommands(nil, cmds)}}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := e.Get(cmds[i%n].Key); err != nil {
			b.Fatal(err)
		}
		i += 7919
	}
}
