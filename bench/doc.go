// Package bench holds kvbench's logic: workloads, the engines they run against, the runner that
// measures them and the reports it prints. cmd/kvbench is a thin command line over it.
//
// Layering (DESIGN.md §1): bench sits at the top, beside cmd/kvbench. It imports the root bondkv
// package and internal/testcluster for the product, raftgroup for the exact dragonboat settings
// bondkv runs with, and pebble/v2 and dragonboat directly for the baselines.
//
// # Engines
//
// Every engine implements Engine (Open, Put, Details, Close):
//
//   - pebble: raw pebble/v2 with default options, every Set synced (pebble.Sync). Concurrent
//     synced writes share WAL fsyncs (group commit); Details reports how many.
//   - raft-single: one raw dragonboat group replicated on Nodes NodeHosts in this process, over
//     loopback TCP, with exactly bondkv's node and replica configuration
//     (raftgroup.NodeHostConfig, raftgroup.ReplicaConfig) and a trivial in-memory state machine:
//     what consensus alone costs. Puts are SyncPropose calls on NO-OP sessions, spread
//     round-robin over the NodeHosts (followers forward to the leader); ErrShardNotReady and
//     ErrSystemBusy are retried with 2 s attempts.
//   - bondkv: with one node bondkv.Open with zero Options but the logger (the embedded default),
//     then a wait for its first election; with more, internal/testcluster. Puts are spread
//     round-robin over the nodes.
//
// # Measurement
//
// The put workload runs Concurrency writers, each with one put in flight, of keys "user%012d"
// drawn uniformly from [0, Keys) and values of ValueSize random bytes, for Warmup and then
// Duration. Only puts that start after the warm-up and finish within the window are counted;
// ops_per_sec is those puts divided by Duration. Each writer records every latency in its own
// Histogram (log-linear buckets, 0.8 % resolution, no lock) and the runner merges them after
// the writers stop. A failed put is counted, not retried, and its writer pauses 1 ms.
//
// A Comparison runs several engines one after the other with the same workload, each in its own
// directory, and divides every engine's figures by the first one's (pebble): measured in the
// same run on the same disk, the ratios travel better between machines than the raw figures.
//
// Process CPU time (user + system, getrusage) over the measured window is reported as
// cpu_cores and cpu_us_per_op: with the throughput it tells whether a run was CPU- or
// fsync-bound. bondkv's Details add the Raft entries its nodes proposed and the puts per entry
// (the proposal batching factor).
//
// # Groups
//
// RunGroups (kvbench groups) measures what many Raft groups cost one node: it starts Count
// single-replica groups on one raftgroup.Host and reports the time to create them, the RSS and
// heap they add, goroutines, and idle CPU, optionally followed by one write per group.
//
// # Transactions
//
// RunTxn (kvbench txn) measures, on one cluster pre-split into ranges and in one run, plain
// puts, then db.Update transactions that read and write KeysPerTxn keys in one range (1PC),
// then, with RangesPerTxn ≥ 2, the same transactions over that many ranges (2PC). It reports
// commits per second, latency percentiles (of the whole Update, retries included; its read and
// commit parts separately), the transaction counters over the window (commits by path,
// conflicts, aborts, abort rate) and the ratios txn_1pc/put and txn_2pc/txn_1pc beside the
// goals they aim at.
//
// Data goes to a fresh temporary directory removed afterwards, or to Dir/<engine> (kept), which
// must not hold data yet: dragonboat freezes the Raft addresses, which are fresh loopback ports
// every run.
package bench
