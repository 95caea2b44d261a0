// Package testcluster runs several bondkv nodes (root DBs) in one process on loopback: the
// harness of the integration tests and of kvbench's in-process clusters.
//
// Each node has its own directory and Raft port. Nodes can be killed (closed; their directory
// stays), restarted from their directory, and — when the cluster runs over a simulated network
// (internal/netsim) — cut off and healed. CheckConsistency waits until every live replica has
// applied the same index and compares their checksums. New, for tests, adds both that check and a
// goroutine-leak check to the test's cleanup.
//
// Layering: imports the root package and internal/netsim; nothing imports it but tests and bench.
package testcluster
