package store

import (
	"fmt"

	"github.com/bondkv/bondkv/internal/base"
)

// ApproximateSize returns an estimate of the disk space used by the data records of span, in
// bytes (pebble's EstimateDiskUsage: sstables only, so recent writes still in the memtable are
// not counted). It is 0 for an empty span such as base.NoSpan.
func (e *Engine) ApproximateSize(span base.Span) (uint64, error) {
	if err := e.enter(); err != nil {
		return 0, err
	}
	defer e.exit()
	if span.Empty() {
		return 0, nil
	}
	start, end := base.DataSpan(span)
	n, err := e.db.EstimateDiskUsage(start, end)
	if err != nil {
		return 0, fmt.Errorf("store: approximate size of %s: %w", span, err)
	}
	return n, nil
}

// SplitKey returns a user key roughly in the middle of span's data by bytes: the key at which
// the running sum of the key and record sizes before it (tombstones included) reaches half the
// span's total, or the last key.
// The key is strictly after the span's first key, so it is strictly inside the span and splits
// it into two non-empty halves. SplitKey returns nil if the span has fewer than two keys. It
// reads one consistent view, twice (a sizing pass and a search pass).
func (e *Engine) SplitKey(span base.Span) ([]byte, error) {
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.exit()
	if span.Empty() {
		return nil, nil
	}
	snap := e.db.NewSnapshot()
	defer snap.Close()
	start, end := base.DataSpan(span)
	var total, n uint64
	err := iterate(snap, start, end, func(k, v []byte) (bool, error) {
		total += uint64(len(k) - len(base.DataPrefix) + len(v))
		n++
		return true, nil
	})
	if err != nil || n < 2 {
		return nil, wrapSplitKey(span, err)
	}
	var sum uint64
	var key []byte
	first := true
	err = iterate(snap, start, end, func(k, v []byte) (bool, error) {
		if !first {
			key = append(key[:0], k[len(base.DataPrefix):]...)
			if 2*sum >= total {
				return false, nil
			}
		}
		first = false
		sum += uint64(len(k) - len(base.DataPrefix) + len(v))
		return true, nil
	})
	if err != nil {
		return nil, wrapSplitKey(span, err)
	}
	return key, nil
}

func wrapSplitKey(span base.Span, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("store: split key of %s: %w", span, err)
}
