package testcluster

import (
	"context"
	"testing"

	"go.uber.org/goleak"
)

// New starts a cluster for a test in t.TempDir(). On cleanup it checks replica consistency,
// closes every node, and fails the test if goroutines started since New are still running.
func New(t testing.TB, cfg Config) *Cluster {
	t.Helper()
	leaks := goleak.IgnoreCurrent()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	c, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start cluster: %v", err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			if err := c.CheckConsistency(context.Background()); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
		if err := c.Close(); err != nil {
			t.Errorf("cleanup: close: %v", err)
		}
		if err := goleak.Find(leaks); err != nil {
			t.Errorf("cleanup: goroutine leak: %v", err)
		}
	})
	return c
}
