package shard

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/bondkv/bondkv/internal/base"
)

// Replica is one replica of a range as the meta range records it.
type Replica struct {
	Node      base.NodeID `json:"node"`
	NonVoting bool        `json:"non_voting,omitempty"`
}

// Policy is a range's placement policy.
type Policy struct {
	// Replicas is the number of voters wanted. 0 = the node's default (3, or fewer while the
	// cluster has fewer live nodes).
	Replicas int `json:"replicas,omitempty"`
	// Constraints are locality labels every replica's node must carry (e.g. region=eu).
	Constraints map[string]string `json:"constraints,omitempty"`
	// Consistency of reads: Strong (the default) reads are linearizable; Eventual reads are
	// served by the nearest replica, at most a bounded time behind.
	Consistency Consistency `json:"consistency,omitempty"`
}

// Consistency is a range's read consistency.
type Consistency uint8

const (
	// Strong: every read is linearizable (a ReadIndex round through the leader).
	Strong Consistency = 0
	// Eventual: reads go to the nearest replica and may be a bounded time behind.
	Eventual Consistency = 1
)

func (c Consistency) String() string {
	switch c {
	case Strong:
		return "strong"
	case Eventual:
		return "eventual"
	}
	return fmt.Sprintf("Consistency(%d)", uint8(c))
}

// Descriptor describes a range: its span, its replicas, its policy and its generation, which
// grows with every split and merge of the range, so that of two descriptors covering one key
// the one with the higher generation is current.
type Descriptor struct {
	RangeID    base.RangeID `json:"range_id"`
	Start      []byte       `json:"start"`
	End        []byte       `json:"end"` // nil = unbounded; Start == End (non-nil) = no user keys (meta)
	Generation uint64       `json:"generation"`
	Replicas   []Replica    `json:"replicas"`
	Policy     Policy       `json:"policy"`
	// Sticky marks a range created by an explicit Split: it is never merged automatically.
	Sticky bool `json:"sticky,omitempty"`
}

// Span is the descriptor's user-key span.
func (d *Descriptor) Span() base.Span { return base.Span{Start: d.Start, End: d.End} }

// ContainsKey reports whether user key k belongs to the range.
func (d *Descriptor) ContainsKey(k []byte) bool {
	return !d.isSystem() && d.Span().Contains(k)
}

func (d *Descriptor) isSystem() bool { return d.End != nil && bytes.Equal(d.Start, d.End) }

// HasReplica reports whether node holds a replica (voting or not).
func (d *Descriptor) HasReplica(node base.NodeID) bool {
	for _, r := range d.Replicas {
		if r.Node == node {
			return true
		}
	}
	return false
}

// Voters returns the voting replicas' nodes.
func (d *Descriptor) Voters() []base.NodeID {
	var out []base.NodeID
	for _, r := range d.Replicas {
		if !r.NonVoting {
			out = append(out, r.Node)
		}
	}
	return out
}

// Clone returns a deep copy.
func (d *Descriptor) Clone() *Descriptor {
	c := *d
	c.Start = bytes.Clone(d.Start)
	if d.End != nil {
		c.End = bytes.Clone(d.End)
		if c.End == nil {
			c.End = []byte{}
		}
	}
	if d.Start != nil && c.Start == nil {
		c.Start = []byte{}
	}
	c.Replicas = append([]Replica(nil), d.Replicas...)
	if d.Policy.Constraints != nil {
		c.Policy.Constraints = make(map[string]string, len(d.Policy.Constraints))
		for k, v := range d.Policy.Constraints {
			c.Policy.Constraints[k] = v
		}
	}
	return &c
}

func (d *Descriptor) String() string {
	return fmt.Sprintf("r%d%s gen %d %v", d.RangeID, d.Span(), d.Generation, d.Replicas)
}

func (d *Descriptor) setReplica(r Replica) {
	for i := range d.Replicas {
		if d.Replicas[i].Node == r.Node {
			d.Replicas[i] = r
			return
		}
	}
	d.Replicas = append(d.Replicas, r)
	sortReplicas(d.Replicas)
}

func (d *Descriptor) removeReplica(node base.NodeID) {
	out := d.Replicas[:0]
	for _, r := range d.Replicas {
		if r.Node != node {
			out = append(out, r)
		}
	}
	d.Replicas = out
}

func encodeDescriptor(d *Descriptor) []byte {
	b, err := json.Marshal(d)
	if err != nil {
		panic(fmt.Sprintf("shard: encode descriptor: %v", err)) // plain data: cannot fail
	}
	return b
}

func decodeDescriptor(b []byte) (*Descriptor, error) {
	var d Descriptor
	if err := json.Unmarshal(b, &d); err != nil || d.RangeID == 0 {
		return nil, fmt.Errorf("shard: descriptor %q: %w", b, base.ErrCorruption)
	}
	return &d, nil
}
