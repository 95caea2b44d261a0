package base

import "fmt"

// Size limits on user input. They keep one command well inside a Raft entry and make a bad
// request fail before it reaches consensus.
const (
	// MaxKeySize is the largest user key, in bytes.
	MaxKeySize = 4 << 10
	// MaxValueSize is the largest value, in bytes.
	MaxValueSize = 1 << 20
)

// CheckKey returns a typed error if key is empty or longer than MaxKeySize.
func CheckKey(key []byte) error {
	if len(key) == 0 {
		return ErrEmptyKey
	}
	if len(key) > MaxKeySize {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrKeyTooLarge, len(key), MaxKeySize)
	}
	return nil
}

// CheckValue returns a typed error if value is longer than MaxValueSize.
func CheckValue(value []byte) error {
	if len(value) > MaxValueSize {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrValueTooLarge, len(value), MaxValueSize)
	}
	return nil
}
