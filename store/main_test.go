package store

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind (a pebble DB or snapshot
// not closed).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
