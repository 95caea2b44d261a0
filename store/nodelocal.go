package store

import (
	"errors"
	"fmt"

	"github.com/bondkv/bondkv/internal/base"
	"github.com/cockroachdb/pebble/v2"
)

// Node-local keys (x/<key>) belong to the node, not to any range: they are never replicated,
// never part of a snapshot or checksum, and survive every range operation (node identity,
// archived fragments).

// PutNodeLocal durably (fsynced) stores value under the node-local key. The key must be
// non-empty and at most base.MaxKeySize bytes; the value at most base.MaxValueSize.
func (e *Engine) PutNodeLocal(key string, value []byte) error {
	if err := e.enter(); err != nil {
		return err
	}
	defer e.exit()
	if err := base.CheckKey([]byte(key)); err != nil {
		return err
	}
	if err := base.CheckValue(value); err != nil {
		return err
	}
	if err := e.db.Set(base.NodeLocalKey(key), value, pebble.Sync); err != nil {
		return fmt.Errorf("store: put node-local %q: %w", key, err)
	}
	return nil
}

// GetNodeLocal returns a copy of the node-local key's value, or base.ErrNotFound.
func (e *Engine) GetNodeLocal(key string) ([]byte, error) {
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.exit()
	if err := base.CheckKey([]byte(key)); err != nil {
		return nil, err
	}
	v, closer, err := e.db.Get(base.NodeLocalKey(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, base.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: get node-local %q: %w", key, err)
	}
	defer closer.Close()
	return append(make([]byte, 0, len(v)), v...), nil
}

// DeleteNodeLocal durably deletes the node-local key; deleting an absent key is not an error.
func (e *Engine) DeleteNodeLocal(key string) error {
	if err := e.enter(); err != nil {
		return err
	}
	defer e.exit()
	if err := base.CheckKey([]byte(key)); err != nil {
		return err
	}
	if err := e.db.Delete(base.NodeLocalKey(key), pebble.Sync); err != nil {
		return fmt.Errorf("store: delete node-local %q: %w", key, err)
	}
	return nil
}
