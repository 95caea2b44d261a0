package bench

import (
	"math"
	"math/bits"
	"time"
)

// Histogram records latencies in log-linear buckets (HdrHistogram's layout): values below 128 ns
// are exact; above, every power of two is split into 128 buckets, so a reported value is within
// 1/128 (0.8 %) above the true one. Values are clamped to [0, 2^40 ns ≈ 18 min].
//
// A Histogram is not safe for concurrent use: each writer records into its own and the runner
// merges them when the writers have stopped. The zero value is ready to use; it is 35 KiB.
type Histogram struct {
	counts   [histBuckets]uint64
	n        uint64
	sum      int64 // nanoseconds
	min, max int64 // nanoseconds; valid when n > 0
}

const (
	histSubBits  = 7
	histSub      = 1 << histSubBits
	histMaxBits  = 40
	histMaxValue = 1<<histMaxBits - 1
	histBuckets  = (histMaxBits - histSubBits + 1) * histSub
)

// histIndex is the bucket of v, 0 <= v <= histMaxValue.
func histIndex(v int64) int {
	if v < histSub {
		return int(v)
	}
	shift := bits.Len64(uint64(v)) - 1 - histSubBits
	return (shift+1)<<histSubBits + int(v>>shift) - histSub
}

// histUpper is the largest value that falls in bucket i.
func histUpper(i int) int64 {
	if i < histSub {
		return int64(i)
	}
	shift := i>>histSubBits - 1
	mant := int64(i&(histSub-1) + histSub)
	return (mant+1)<<shift - 1
}

// Record adds one observation.
func (h *Histogram) Record(d time.Duration) {
	v := min(max(int64(d), 0), histMaxValue)
	h.counts[histIndex(v)]++
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if h.n == 0 || v > h.max {
		h.max = v
	}
	h.n++
	h.sum += v
}

// Merge adds every observation of o to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if h.n == 0 || o.max > h.max {
		h.max = o.max
	}
	h.n += o.n
	h.sum += o.sum
}

// Count is the number of observations.
func (h *Histogram) Count() uint64 { return h.n }

// Min is the smallest observation, 0 if there is none.
func (h *Histogram) Min() time.Duration { return time.Duration(h.min) }

// Max is the largest observation (exact), 0 if there is none.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Mean is the exact mean, 0 if there is no observation.
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(math.Round(float64(h.sum) / float64(h.n)))
}

// Percentile returns the smallest recorded value v such that at least q percent of the
// observations are <= v, up to the bucket resolution (it reports the bucket's upper bound,
// never more than Max). q is clamped to [0, 100]; 0 observations give 0.
func (h *Histogram) Percentile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	q = min(max(q, 0), 100)
	rank := uint64(math.Ceil(q / 100 * float64(h.n)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(min(max(histUpper(i), h.min), h.max))
		}
	}
	return time.Duration(h.max)
}
