package rafttest

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"

	sm "github.com/lni/dragonboat/v4/statemachine"
)

// kvSM is a trivial in-memory state machine: a command "k=v" sets k; a lookup of k returns v.
type kvSM struct {
	mu sync.Mutex
	kv map[string]string
}

// NewKVSM creates the harness's state machine: a command "k=v" sets k to v (its Result value
// is the number of keys), a lookup of the string k returns k's value as a string ("" if
// unset), and snapshots are the map as JSON. It is a sm.CreateStateMachineFunc.
func NewKVSM(uint64, uint64) sm.IStateMachine { return &kvSM{kv: map[string]string{}} }

func (s *kvSM) Update(e sm.Entry) (sm.Result, error) {
	k, v, ok := strings.Cut(string(e.Cmd), "=")
	if !ok {
		return sm.Result{}, fmt.Errorf("bad command %q", e.Cmd)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.kv[k] = v
	return sm.Result{Value: uint64(len(s.kv))}, nil
}

func (s *kvSM) Lookup(q any) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.kv[q.(string)], nil
}

func (s *kvSM) SaveSnapshot(w io.Writer, _ sm.ISnapshotFileCollection, _ <-chan struct{}) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return json.NewEncoder(w).Encode(s.kv)
}

func (s *kvSM) RecoverFromSnapshot(r io.Reader, _ []sm.SnapshotFile, _ <-chan struct{}) error {
	kv := map[string]string{}
	if err := json.NewDecoder(r).Decode(&kv); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.kv = kv
	return nil
}

func (s *kvSM) Close() error { return nil }
