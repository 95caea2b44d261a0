package store

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Default sizes used when the corresponding Options field is zero.
const (
	// DefaultCacheSize is the block cache size used when Options.CacheSize is 0.
	DefaultCacheSize = 64 << 20
	// DefaultMemTableSize is the memtable size used when Options.MemTableSize is 0 (pebble's own
	// default).
	DefaultMemTableSize = 4 << 20
)

// Options configures Open. The zero value (or a nil *Options) works. Open copies the struct and
// fills defaults on its copy; the caller's value is never mutated.
type Options struct {
	// FS is the filesystem the database lives on. Default (nil): vfs.Default, the OS filesystem.
	// Tests use vfs.NewMem or vfs.NewCrashableMem.
	FS vfs.FS

	// Logger receives the engine's own messages and pebble's. Default (nil): discard.
	// Pebble's Infof is dropped, Errorf is logged at Error, and Fatalf is logged at Error and then
	// panics (pebble's contract: Fatalf never returns).
	Logger *slog.Logger

	// CacheSize is the size of pebble's block cache, in bytes. Default (0): DefaultCacheSize
	// (64 MiB). Negative is invalid.
	CacheSize int64

	// MemTableSize is the size of one pebble memtable, in bytes. Default (0):
	// DefaultMemTableSize (4 MiB). Negative is invalid. Small values force frequent flushes
	// (useful in tests).
	MemTableSize int64
}

// withDefaults returns a copy of o (nil = zero value) with defaults filled in, or every problem
// found, joined.
func (o *Options) withDefaults() (Options, error) {
	var c Options
	if o != nil {
		c = *o
	}
	var errs []error
	if c.CacheSize < 0 {
		errs = append(errs, fmt.Errorf("CacheSize %d is negative", c.CacheSize))
	}
	if c.MemTableSize < 0 {
		errs = append(errs, fmt.Errorf("MemTableSize %d is negative", c.MemTableSize))
	}
	if err := errors.Join(errs...); err != nil {
		return Options{}, fmt.Errorf("store: invalid options: %w", err)
	}
	if c.FS == nil {
		c.FS = vfs.Default
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.CacheSize == 0 {
		c.CacheSize = DefaultCacheSize
	}
	if c.MemTableSize == 0 {
		c.MemTableSize = DefaultMemTableSize
	}
	return c, nil
}
