// Package rafttest is a test harness for the packages below the root that carry Raft traffic
// (internal/rpc, internal/netsim): a trivial in-memory state machine ([NewKVSM]) and N
// dragonboat NodeHosts in one process replicating one shard ([Start]), each with the transport
// the caller's factory function gives it, plus retrying [Propose] and [Read] helpers.
//
// Layering: rafttest imports nothing from bondkv, so that the tests of any package, the
// transports included, can use it; the transport under test is passed in as a function.
// Non-test code must not import it.
//
// # Harness
//
// Every NodeHost runs in its own directory of t.TempDir() with a tiny in-memory LogDB, a 10 ms
// RTT, election after 100 RTTs and a snapshot every 20 entries (5 kept), so a node cut off for
// a while catches up by snapshot. Each NodeHost's Raft address is a loopback listener opened
// before the NodeHost starts ([PreListen]), so no other process can take the port. NodeHosts
// are closed by t.Cleanup. [QuietDragonboat] sets dragonboat's package loggers, which are
// process-wide, to ERROR once per process.
//
// Propose and Read retry the errors dragonboat documents as transient for up to 20 s, with
// 2 s per attempt, and fail the test on any other error.
package rafttest
