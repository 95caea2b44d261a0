package bench

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestHistogramExactSmallValues(t *testing.T) {
	var h Histogram
	for v := 1; v <= 100; v++ { // 1..100 ns: below 128 ns every bucket is one value
		h.Record(time.Duration(v))
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0, 1}, {1, 1}, {50, 50}, {90, 90}, {99, 99}, {99.5, 100}, {100, 100}} {
		if got := h.Percentile(tc.q); got != tc.want {
			t.Errorf("p%v = %v, want %v", tc.q, got, tc.want)
		}
	}
	if h.Count() != 100 || h.Min() != 1 || h.Max() != 100 {
		t.Errorf("count/min/max = %d/%v/%v, want 100/1ns/100ns", h.Count(), h.Min(), h.Max())
	}
	if got, want := h.Mean(), 50*time.Nanosecond; got != want && got != want+1 { // 50.5 rounds
		t.Errorf("mean = %v, want 50.5ns", got)
	}
}

func TestHistogramPercentilesWithinResolution(t *testing.T) {
	// 1 µs .. 10 ms in 1 µs steps: pN is N % of 10 ms, reported within +1/128.
	var h Histogram
	for v := 1; v <= 10000; v++ {
		h.Record(time.Duration(v) * time.Microsecond)
	}
	for _, q := range []float64{50, 90, 99, 99.9} {
		want := time.Duration(q / 100 * float64(10*time.Millisecond))
		got := h.Percentile(q)
		if got < want || float64(got) > float64(want)*(1+1.0/128) {
			t.Errorf("p%v = %v, want %v (+0.8%%)", q, got, want)
		}
	}
	if h.Percentile(100) != 10*time.Millisecond || h.Max() != 10*time.Millisecond {
		t.Errorf("p100 = %v, max = %v, want exactly 10ms", h.Percentile(100), h.Max())
	}
}

func TestHistogramSkewed(t *testing.T) {
	// 98 fast ops and 2 slow ones: p50 and p90 are fast, p99 is slow.
	var h Histogram
	for range 98 {
		h.Record(200 * time.Microsecond)
	}
	h.Record(50 * time.Millisecond)
	h.Record(80 * time.Millisecond)
	check := func(q float64, want time.Duration) {
		t.Helper()
		got := h.Percentile(q)
		if got < want || float64(got) > float64(want)*(1+1.0/128) {
			t.Errorf("p%v = %v, want %v", q, got, want)
		}
	}
	check(50, 200*time.Microsecond)
	check(90, 200*time.Microsecond)
	check(98, 200*time.Microsecond)
	check(99, 50*time.Millisecond)
	check(100, 80*time.Millisecond)
}

func TestHistogramMergeMatchesSingle(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	r := rand.New(rand.NewPCG(seed, 1))
	var all Histogram
	parts := make([]Histogram, 8)
	var raw []time.Duration
	for i := range 20000 {
		d := time.Duration(r.ExpFloat64() * float64(time.Millisecond))
		all.Record(d)
		parts[i%len(parts)].Record(d)
		raw = append(raw, d)
	}
	var merged Histogram
	for i := range parts {
		merged.Merge(&parts[i])
	}
	if merged != all {
		t.Fatalf("seed %d: merged histogram differs from the one recorded directly", seed)
	}
	slices.Sort(raw)
	for _, q := range []float64{50, 90, 99} {
		exact := raw[int(q/100*float64(len(raw)))-1]
		got := merged.Percentile(q)
		if got < exact || float64(got) > float64(exact)*(1+1.0/128)+1 {
			t.Errorf("seed %d: p%v = %v, exact %v", seed, q, got, exact)
		}
	}
}

func TestHistogramEdges(t *testing.T) {
	var h Histogram
	if h.Percentile(50) != 0 || h.Mean() != 0 || h.Max() != 0 {
		t.Fatal("empty histogram must report zeros")
	}
	h.Record(-time.Second) // clamped to 0
	h.Record(time.Hour)    // clamped to 2^40 ns
	if h.Min() != 0 || h.Max() != histMaxValue {
		t.Errorf("min/max = %v/%v, want 0/%v", h.Min(), h.Max(), time.Duration(histMaxValue))
	}
	var empty Histogram
	h.Merge(&empty)
	if h.Count() != 2 {
		t.Errorf("count after merging an empty histogram = %d, want 2", h.Count())
	}
	for i := range histBuckets { // every bucket's upper bound maps back to it
		if got := histIndex(histUpper(i)); got != i {
			t.Fatalf("histIndex(histUpper(%d)) = %d", i, got)
		}
	}
}
