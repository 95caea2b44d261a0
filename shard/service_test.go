package shard

import (
	"fmt"
	"testing"

	"github.com/bondkv/bondkv/internal/base"
)

func sp(start, end string) base.Span {
	s := base.Span{Start: []byte(start)}
	if end != "" {
		s.End = []byte(end)
	}
	return s
}

func TestSubtract(t *testing.T) {
	for _, tc := range []struct {
		from []base.Span
		o    base.Span
		want string
	}{
		{[]base.Span{sp("a", "z")}, sp("m", "p"), `[["a", "m") ["p", "z")]`},
		{[]base.Span{sp("a", "z")}, sp("", "c"), `[["c", "z")]`},
		{[]base.Span{sp("a", "z")}, sp("x", ""), `[["a", "x")]`},
		{[]base.Span{sp("a", "")}, sp("m", "p"), `[["a", "m") ["p", +inf)]`},
		{[]base.Span{sp("a", "c")}, sp("d", "e"), `[["a", "c")]`},
		{[]base.Span{sp("a", "c")}, sp("", ""), `[]`},
	} {
		if got := fmt.Sprint(subtract(tc.from, tc.o)); got != tc.want {
			t.Errorf("%v minus %v = %s, want %s", tc.from, tc.o, got, tc.want)
		}
	}
}
