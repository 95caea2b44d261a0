package base

import (
	"bytes"
	"errors"
	"testing"
)

func TestSpansMapToContiguousEngineSpans(t *testing.T) {
	s := Span{Start: []byte("b"), End: []byte("d")}
	start, end := DataSpan(s)
	for _, k := range []string{"b", "b\x00", "c", "czzz"} {
		dk := DataKey([]byte(k))
		if bytes.Compare(dk, start) < 0 || bytes.Compare(dk, end) >= 0 {
			t.Errorf("%q: data key %q outside [%q, %q)", k, dk, start, end)
		}
		if !s.Contains([]byte(k)) {
			t.Errorf("span does not contain %q", k)
		}
	}
	for _, k := range []string{"a", "d", "d\x00"} {
		dk := DataKey([]byte(k))
		if bytes.Compare(dk, start) >= 0 && bytes.Compare(dk, end) < 0 {
			t.Errorf("%q: data key inside the span's engine span", k)
		}
	}
	// Unbounded spans cover every data key and no intent or range-local key.
	start, end = DataSpan(FullSpan)
	for _, k := range [][]byte{IntentKey([]byte("a")), AppliedIndexKey(3), NodeLocalKey("node")} {
		if bytes.Compare(k, start) >= 0 && bytes.Compare(k, end) < 0 {
			t.Errorf("%q inside the full data span", k)
		}
	}
	if dk := DataKey(bytes.Repeat([]byte{0xff}, 10)); bytes.Compare(dk, end) >= 0 {
		t.Errorf("a 0xff key falls outside the full data span")
	}
	if u, ok := UserKey(DataKey([]byte("k"))); !ok || string(u) != "k" {
		t.Errorf("UserKey(DataKey(k)) = %q, %v", u, ok)
	}
	if _, ok := UserKey(AppliedIndexKey(3)); ok {
		t.Errorf("UserKey accepted a range-local key")
	}
}

func TestRangeLocalSpansDoNotOverlap(t *testing.T) {
	s3, e3 := RangeLocalSpan(3)
	s4, _ := RangeLocalSpan(4)
	k := AppliedIndexKey(3)
	if bytes.Compare(k, s3) < 0 || bytes.Compare(k, e3) >= 0 {
		t.Fatalf("applied index key of range 3 outside its span")
	}
	if bytes.Compare(e3, s4) > 0 {
		t.Fatalf("range 3's local span overlaps range 4's")
	}
	if bytes.Compare(AppliedIndexKey(256), e3) < 0 && bytes.Compare(AppliedIndexKey(256), s3) >= 0 {
		t.Fatalf("range 256's key inside range 3's span")
	}
}

func TestLimits(t *testing.T) {
	if !errors.Is(CheckKey(nil), ErrEmptyKey) || !errors.Is(CheckKey(make([]byte, MaxKeySize+1)), ErrKeyTooLarge) {
		t.Fatal("key limits not enforced")
	}
	if CheckKey(make([]byte, MaxKeySize)) != nil || CheckValue(make([]byte, MaxValueSize)) != nil {
		t.Fatal("values at the limit rejected")
	}
	if !errors.Is(CheckValue(make([]byte, MaxValueSize+1)), ErrValueTooLarge) {
		t.Fatal("value limit not enforced")
	}
	if (Span{Start: []byte("b"), End: []byte("a")}).Valid() || !(Span{Start: []byte("a")}).Valid() {
		t.Fatal("Span.Valid wrong")
	}
}

func TestSpanPredicates(t *testing.T) {
	sp := func(s, e string) Span { return Span{Start: []byte(s), End: []byte(e)} }
	from := func(s string) Span { return Span{Start: []byte(s)} }
	if !NoSpan.Empty() || NoSpan.Valid() || NoSpan.Contains(nil) || NoSpan.Contains([]byte("a")) {
		t.Fatal("NoSpan is not empty")
	}
	if FullSpan.Empty() || !sp("b", "a").Empty() || sp("a", "b").Empty() {
		t.Fatal("Empty wrong")
	}
	for _, tc := range []struct {
		a, b Span
		want bool
	}{
		{sp("a", "c"), sp("b", "d"), true},
		{sp("a", "c"), sp("c", "d"), false},
		{sp("a", "c"), from("b"), true},
		{from("c"), sp("a", "c"), false},
		{from("a"), from("z"), true},
		{FullSpan, sp("a", "b"), true},
		{NoSpan, FullSpan, false},
		{sp("a", "c"), sp("c", "a"), false},
	} {
		if tc.a.Overlaps(tc.b) != tc.want || tc.b.Overlaps(tc.a) != tc.want {
			t.Errorf("%s overlaps %s: want %v", tc.a, tc.b, tc.want)
		}
	}
	if !sp("a", "b").Equal(Span{Start: []byte("a"), End: []byte("b")}) || from("a").Equal(sp("a", "")) ||
		!(Span{End: []byte{}}).Equal(NoSpan) || FullSpan.Equal(NoSpan) {
		t.Fatal("Equal wrong")
	}
	if got := sp("a", "b").String(); got != `["a", "b")` {
		t.Fatalf("String = %s", got)
	}
	if got := from("a").String(); got != `["a", +inf)` {
		t.Fatalf("String = %s", got)
	}
	for _, f := range []func(Span) ([]byte, []byte){DataSpan, IntentSpan} {
		if s, e := f(NoSpan); bytes.Compare(s, e) < 0 {
			t.Fatalf("NoSpan maps to a non-empty engine span [%q, %q)", s, e)
		}
	}
}

func TestLocalKeys(t *testing.T) {
	s, e := RangeLocalSpan(3)
	for _, k := range [][]byte{StateKey(3), LocalUserKey(3, []byte("k")), LocalUserKey(3, []byte{0xff, 0xff})} {
		if bytes.Compare(k, s) < 0 || bytes.Compare(k, e) >= 0 {
			t.Errorf("%q outside range 3's local span", k)
		}
	}
	if !bytes.HasPrefix(LocalUserKey(3, []byte("k")), LocalUserPrefix(3)) || bytes.HasPrefix(StateKey(3), LocalUserPrefix(3)) {
		t.Fatal("local user prefix wrong")
	}
	for in, want := range map[string]string{"ab": "ac", "a\xff": "b", "\xff\xff": "", "": ""} {
		got := PrefixEnd([]byte(in))
		if string(got) != want || (want == "" && got != nil) {
			t.Errorf("PrefixEnd(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSpanCovers(t *testing.T) {
	s := Span{Start: []byte("b"), End: []byte("m")}
	open := Span{Start: []byte("b")}
	for _, c := range []struct {
		outer, sub Span
		want       bool
	}{
		{s, Span{Start: []byte("b"), End: []byte("m")}, true},
		{s, Span{Start: []byte("c"), End: []byte("d")}, true},
		{s, Span{Start: []byte("a"), End: []byte("d")}, false},
		{s, Span{Start: []byte("c"), End: []byte("n")}, false},
		{s, Span{Start: []byte("c")}, false},
		{open, Span{Start: []byte("c")}, true},
		{open, Span{Start: []byte("a"), End: []byte("c")}, false},
		{Span{Start: []byte("x"), End: []byte("x")}, Span{Start: []byte("x"), End: []byte("x")}, false},
	} {
		if got := c.outer.Covers(c.sub); got != c.want {
			t.Errorf("%s covers %s: %v, want %v", c.outer, c.sub, got, c.want)
		}
	}
}
