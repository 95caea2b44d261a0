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
