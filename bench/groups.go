package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/bondkv/bondkv/internal/base"
	"github.com/bondkv/bondkv/raftgroup"
	"github.com/bondkv/bondkv/store"
)

// GroupsConfig describes a groups benchmark.
type GroupsConfig struct {
	// Count is the number of groups (ranges), 1 to MaxGroups. Each has a replica on each of the
	// GroupsNodes nodes.
	Count int
	// Settle is how long the cluster is left alone once every group has a leader, before the
	// idle window (groups go quiet only after some inactivity; see raftgroup.ReplicaConfig).
	Settle time.Duration
	// Idle is how long the idle CPU use is measured after Settle (0 = not measured).
	Idle time.Duration
	// Write proposes one put to every group after the idle window.
	Write bool
	// Throughput is how long each of the two throughput runs lasts (0 = none): Writers writers
	// doing single puts round-robin over all the groups, then the same writers over HotGroups
	// groups only.
	Throughput time.Duration
	// Writers is the number of writers of the throughput runs, each with one put in flight.
	// Default 64.
	Writers int
	// HotGroups is how many groups the second throughput run writes to (at most Count).
	// Default 10.
	HotGroups int
	// Dir, if set, holds the data under Dir/groups (which must not hold anything yet) and is
	// kept. If empty, the data goes to a fresh temporary directory removed afterwards.
	Dir string
	// Logger receives the engines' and dragonboat's logs. nil = discard.
	Logger *slog.Logger
	// Progress, if set, is called from RunGroups's goroutine at most about five times a second
	// per phase, at the end of each phase, and once more with Finished set.
	Progress func(GroupsProgress)
}

// MaxGroups is the largest GroupsConfig.Count: the group keys g%06d have six digits.
const MaxGroups = 999_999

// GroupsNodes is the number of nodes of the groups benchmark's cluster, all in this process.
const GroupsNodes = 3

// DefaultGroupsConfig is the configuration kvbench groups starts from.
func DefaultGroupsConfig() GroupsConfig {
	return GroupsConfig{Count: 100, Settle: 3 * time.Second, Idle: 5 * time.Second,
		Throughput: 5 * time.Second, Writers: 64, HotGroups: 10}
}

// Validate reports every problem with c at once.
func (c GroupsConfig) Validate() error {
	var errs []error
	if c.Count < 1 || c.Count > MaxGroups {
		errs = append(errs, fmt.Errorf("count must be between 1 and %d, got %d", MaxGroups, c.Count))
	}
	if c.Settle < 0 {
		errs = append(errs, fmt.Errorf("settle must not be negative, got %v", c.Settle))
	}
	if c.Idle < 0 {
		errs = append(errs, fmt.Errorf("idle must not be negative, got %v", c.Idle))
	}
	if c.Throughput < 0 {
		errs = append(errs, fmt.Errorf("throughput must not be negative, got %v", c.Throughput))
	}
	if c.Writers < 0 {
		errs = append(errs, fmt.Errorf("writers must not be negative, got %d", c.Writers))
	}
	if c.HotGroups < 0 {
		errs = append(errs, fmt.Errorf("hot groups must not be negative, got %d", c.HotGroups))
	}
	return errors.Join(errs...)
}

func (c GroupsConfig) withDefaults() GroupsConfig {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Writers == 0 {
		c.Writers = 64
	}
	if c.HotGroups == 0 {
		c.HotGroups = 10
	}
	c.HotGroups = min(c.HotGroups, c.Count)
	return c
}

// Groups benchmark phases, as reported in GroupsProgress.Phase.
const (
	GroupsPhaseStart  = "start"  // StartReplica calls; Done and Total count groups
	GroupsPhaseElect  = "elect"  // waiting for leaders; groups with a leader
	GroupsPhaseSettle = "settle" // the settle window; milliseconds
	GroupsPhaseIdle   = "idle"   // the idle window; milliseconds
	GroupsPhaseWrite  = "write"  // one put per group; puts finished
	GroupsPhaseAll    = "all"    // throughput over all groups; milliseconds
	GroupsPhaseHot    = "hot"    // throughput over HotGroups groups; milliseconds
)

// GroupsProgress is a running groups benchmark's state, for a progress display.
type GroupsProgress struct {
	Phase       string
	Done, Total int64
	// Finished is set on the last call; the other fields are then zero.
	Finished bool
}

// GroupsResult is a groups benchmark's measurement; its JSON form is kvbench groups's
// machine-readable output. Sizes are MiB (2^20 bytes), times seconds.
type GroupsResult struct {
	Bench    string `json:"bench"`    // "groups"
	Groups   int    `json:"groups"`   // ranges
	Nodes    int    `json:"nodes"`    // GroupsNodes
	Replicas int    `json:"replicas"` // Groups × Nodes
	CPUs     int    `json:"cpus"`     // GOMAXPROCS
	// The Raft settings the groups ran with (bondkv's defaults).
	RTTMs        uint64 `json:"rtt_ms"`
	ElectionRTT  uint64 `json:"election_rtt"`
	HeartbeatRTT uint64 `json:"heartbeat_rtt"`
	Quiesce      bool   `json:"quiesce"`

	HostS   float64 `json:"host_s"`   // the raftgroup.NewHost calls
	StartS  float64 `json:"start_s"`  // the InitRange and StartReplica calls alone
	CreateS float64 `json:"create_s"` // first StartReplica until every node knows every group's leader

	// Settled process RSS before the NewHost calls (engines open) and once every group has a
	// leader; (after − before)/Groups and (after − before)/Replicas.
	RSSBeforeMiB     float64 `json:"rss_before_mib"`
	RSSAfterMiB      float64 `json:"rss_after_mib"`
	RSSPerGroupMiB   float64 `json:"rss_per_group_mib"`
	RSSPerReplicaMiB float64 `json:"rss_per_replica_mib"`
	// The same for the Go heap (live bytes after a GC). Memory the heap holds but has never
	// touched (zeroed pages fresh from the OS) counts here and not in RSS.
	HeapBeforeMiB     float64 `json:"heap_before_mib"`
	HeapAfterMiB      float64 `json:"heap_after_mib"`
	HeapPerGroupMiB   float64 `json:"heap_per_group_mib"`
	HeapPerReplicaMiB float64 `json:"heap_per_replica_mib"`
	// Goroutines in the process once every group has a leader.
	Goroutines int `json:"goroutines"`

	// IdleCores is the process's CPU time (user + system) over the idle window of IdleS
	// seconds, divided by its length; the window starts SettleS seconds after the last leader.
	SettleS   float64 `json:"settle_s"`
	IdleS     float64 `json:"idle_s"`
	IdleCores float64 `json:"idle_cores"`

	// With Write: puts applied, puts failed, the time for all of them and the goroutines
	// afterwards (raftgroup starts a proposer per range on its first write). All 0 without
	// Write.
	Write                bool    `json:"write"`
	WritesOK             int     `json:"writes_ok"`
	WriteErrors          int     `json:"write_errors"`
	WriteS               float64 `json:"write_s"`
	GoroutinesAfterWrite int     `json:"goroutines_after_write"`
	FirstError           string  `json:"first_error,omitempty"`

	// With Throughput: ThroughputWriters writers, each with one put in flight, for
	// ThroughputS seconds round-robin over all the groups (All), then for as long over
	// HotGroups groups (Hot). HotOverAll is Hot.PutsPerS ÷ All.PutsPerS.
	ThroughputS       float64          `json:"throughput_s"`
	ThroughputWriters int              `json:"throughput_writers"`
	HotGroups         int              `json:"hot_groups"`
	All               *GroupsWriteRate `json:"all,omitempty"`
	Hot               *GroupsWriteRate `json:"hot,omitempty"`
	HotOverAll        float64          `json:"hot_over_all"`
}

// GroupsWriteRate is one throughput run of the groups benchmark.
type GroupsWriteRate struct {
	Groups     int     `json:"groups"` // groups written to
	Puts       int64   `json:"puts"`   // applied
	Errors     int64   `json:"errors"` // failed
	PutsPerS   float64 `json:"puts_per_s"`
	CPUCores   float64 `json:"cpu_cores"` // process CPU time ÷ wall time over the run
	FirstError string  `json:"first_error,omitempty"`
}

// groupsReadyTimeout bounds the wait for every group's first leader: one randomized election
// timeout (up to 2 s by default) plus generous room for a loaded 2-core machine.
func groupsReadyTimeout(count int) time.Duration {
	return 30*time.Second + time.Duration(count)*30*time.Millisecond
}

func groupRange(i int) base.RangeID { return base.FirstUserRangeID + base.RangeID(i) }

func groupKey(i int) []byte { return fmt.Appendf(nil, "g%06d", i) }

// groupSpan is group i's span, [g%06d(i), g%06d(i+1)): distinct, adjacent, non-overlapping.
func groupSpan(i int) base.Span { return base.Span{Start: groupKey(i), End: groupKey(i + 1)} }

// groupsCluster is the benchmark's nodes: an engine and a Host each.
type groupsCluster struct {
	engines []*store.Engine
	hosts   []*raftgroup.Host
}

// close closes the Hosts, then the engines (a Host does not close its engine).
func (c *groupsCluster) close() error {
	for _, h := range c.hosts {
		h.Close()
	}
	var errs []error
	for _, e := range c.engines {
		errs = append(errs, e.Close())
	}
	return errors.Join(errs...)
}

// leaderHost is the Host of range id's leader as node 1 knows it (node 1 if none is known):
// writes go there directly, as bondkv's routing sends them.
func (c *groupsCluster) leaderHost(id base.RangeID) *raftgroup.Host {
	if l, ok := c.hosts[0].Leader(id); ok && l >= 1 && int(l) <= len(c.hosts) {
		return c.hosts[l-1]
	}
	return c.hosts[0]
}

// RunGroups measures what many Raft groups cost: Count groups, each replicated on the
// GroupsNodes nodes of a cluster in this process (one store.Engine and one raftgroup.Host per
// node, bondkv's default configuration, loopback TCP between the nodes).
//
// It runs, in order:
//
//  1. store.Open for each node in <dir>/n<i>/data, then a settled memory sample
//     (debug.FreeOSMemory: a GC that also returns freed pages to the OS, then VmRSS from
//     /proc/self/status and the Go heap): the "before" figures, which include the engines but not
//     the Hosts.
//  2. raftgroup.NewHost for each node on a free loopback port, then for group i = 0..Count-1
//     on every node store.Engine.InitRange (range FirstUserRangeID+i, span [g%06d(i),
//     g%06d(i+1)), one fsynced write) and StartReplica, every node a voter; then, for every group, WaitLeader on every node. create_s runs from the first
//     StartReplica until the last node knows the last group's leader; a group elects a leader
//     after one randomized election timeout (1–2 s), so even one group takes about a second.
//  3. A second settled memory sample (the "after" figures; per group = (after − before)/Count
//     and per replica = (after − before)/(Count × GroupsNodes), so they include the Hosts' fixed
//     cost, which dominates for small counts) and the goroutine count.
//  4. Settle, then Idle: the process's CPU time (user + system, getrusage) over Idle of wall
//     time, in cores: what ticks and heartbeats cost with nothing to do.
//  5. With Write, one put (key g%06d(i)) proposed to every group through its leader's
//     Host.Propose, 64 at a time; writes_ok counts those applied.
//  6. With Throughput, Writers writers each doing one put at a time through the leader's Host
//     for Throughput: first writer w writes to groups w, w+Writers, w+2·Writers, … in turn (all
//     the groups active), then writer w writes to group w mod HotGroups (HotGroups active).
//
// Then the Hosts are closed, the engines after them, and a temporary directory removed.
//
// An error means no result: a bad configuration, an engine or Host failing to open or close,
// a group without a leader in time, or ctx cancelled. Failed writes are not errors; they are
// counted in the result.
func RunGroups(ctx context.Context, cfg GroupsConfig) (res *GroupsResult, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	prog := &groupsReporter{f: cfg.Progress}
	defer prog.finish()

	dir, cleanup, err := engineDir(cfg.Dir, "groups")
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := cleanup(); cerr != nil && err == nil {
			res, err = nil, cerr
		}
	}()
	c := &groupsCluster{}
	defer func() {
		if cerr := c.close(); cerr != nil && err == nil {
			res, err = nil, cerr
		}
	}()
	for i := range GroupsNodes {
		e, err := store.Open(filepath.Join(dir, fmt.Sprintf("n%d", i+1), "data"), &store.Options{Logger: cfg.Logger})
		if err != nil {
			return nil, err
		}
		c.engines = append(c.engines, e)
	}
	addrs, err := freeLoopbackAddrs(GroupsNodes)
	if err != nil {
		return nil, err
	}
	hcfgs := make([]raftgroup.Config, GroupsNodes)
	members := make(map[uint64]string, GroupsNodes)
	for i := range GroupsNodes {
		id := base.NodeID(i + 1)
		hcfgs[i] = raftgroup.Config{NodeID: id, Dir: filepath.Join(dir, fmt.Sprintf("n%d", i+1)),
			RaftAddress: addrs[i], Engine: c.engines[i], Logger: cfg.Logger}
		members[uint64(id)] = addrs[i]
	}
	rc := raftgroup.ReplicaConfig(hcfgs[0], groupRange(0))
	res = &GroupsResult{
		Bench:        "groups",
		Groups:       cfg.Count,
		Nodes:        GroupsNodes,
		Replicas:     cfg.Count * GroupsNodes,
		CPUs:         runtime.GOMAXPROCS(0),
		RTTMs:        raftgroup.NodeHostConfig(hcfgs[0]).RTTMillisecond,
		ElectionRTT:  rc.ElectionRTT,
		HeartbeatRTT: rc.HeartbeatRTT,
		Quiesce:      rc.Quiesce,
		Write:        cfg.Write,
	}

	before, err := settledMemory()
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	for _, hc := range hcfgs {
		h, err := raftgroup.NewHost(hc)
		if err != nil {
			return nil, err
		}
		c.hosts = append(c.hosts, h)
	}
	res.HostS = round3(time.Since(t0).Seconds())

	n := int64(cfg.Count)
	t0 = time.Now()
	for i := range cfg.Count {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("groups: interrupted: %w", err)
		}
		r := raftgroup.Replica{Range: groupRange(i), Members: members}
		for j, h := range c.hosts {
			if err := c.engines[j].InitRange(r.Range, store.RangeState{Span: groupSpan(i)}); err != nil {
				return nil, fmt.Errorf("groups: group %d of %d on node %d: %w", i+1, cfg.Count, j+1, err)
			}
			if err := h.StartReplica(r); err != nil {
				return nil, fmt.Errorf("groups: group %d of %d on node %d: %w", i+1, cfg.Count, j+1, err)
			}
		}
		prog.report(GroupsPhaseStart, int64(i+1), n)
	}
	res.StartS = round3(time.Since(t0).Seconds())
	if err := waitLeaders(ctx, c.hosts, cfg.Count, prog); err != nil {
		return nil, err
	}
	res.CreateS = round3(time.Since(t0).Seconds())

	after, err := settledMemory()
	if err != nil {
		return nil, err
	}
	res.Goroutines = runtime.NumGoroutine()
	res.RSSBeforeMiB, res.RSSAfterMiB = round2(before.rss), round2(after.rss)
	res.RSSPerGroupMiB = round3((after.rss - before.rss) / float64(res.Groups))
	res.RSSPerReplicaMiB = round3((after.rss - before.rss) / float64(res.Replicas))
	res.HeapBeforeMiB, res.HeapAfterMiB = round2(before.heap), round2(after.heap)
	res.HeapPerGroupMiB = round3((after.heap - before.heap) / float64(res.Groups))
	res.HeapPerReplicaMiB = round3((after.heap - before.heap) / float64(res.Replicas))

	if cfg.Idle > 0 {
		if cfg.Settle > 0 {
			if _, _, err := idleCPU(ctx, GroupsPhaseSettle, cfg.Settle, prog); err != nil {
				return nil, err
			}
			res.SettleS = round3(cfg.Settle.Seconds())
		}
		cpu, wall, err := idleCPU(ctx, GroupsPhaseIdle, cfg.Idle, prog)
		if err != nil {
			return nil, err
		}
		res.IdleS = round3(wall.Seconds())
		res.IdleCores = round3(cpu.Seconds() / wall.Seconds())
	}

	if cfg.Write {
		t0 = time.Now()
		ok, failed, firstErr := writeGroups(ctx, c, cfg.Count, prog)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("groups: interrupted: %w", err)
		}
		res.WriteS = round3(time.Since(t0).Seconds())
		res.WritesOK, res.WriteErrors = ok, failed
		res.GoroutinesAfterWrite = runtime.NumGoroutine()
		if firstErr != nil {
			res.FirstError = firstErr.Error()
		}
	}

	if cfg.Throughput > 0 {
		res.ThroughputS = round3(cfg.Throughput.Seconds())
		res.ThroughputWriters, res.HotGroups = cfg.Writers, cfg.HotGroups
		if res.All, err = writeRate(ctx, c, GroupsPhaseAll, cfg.Count, cfg.Writers, cfg.Throughput, prog); err != nil {
			return nil, err
		}
		if res.Hot, err = writeRate(ctx, c, GroupsPhaseHot, cfg.HotGroups, cfg.Writers, cfg.Throughput, prog); err != nil {
			return nil, err
		}
		res.HotOverAll = ratio(res.Hot.PutsPerS, res.All.PutsPerS)
	}
	return res, nil
}

// waitLeaders waits until every node knows a leader of each of the first count groups.
func waitLeaders(ctx context.Context, hosts []*raftgroup.Host, count int, prog *groupsReporter) error {
	wctx, cancel := context.WithTimeout(ctx, groupsReadyTimeout(count))
	defer cancel()
	for i := range count {
		for j, h := range hosts {
			if _, err := h.WaitLeader(wctx, groupRange(i)); err != nil {
				if ctx.Err() != nil {
					return fmt.Errorf("groups: interrupted: %w", ctx.Err())
				}
				return fmt.Errorf("groups: node %d knows the leader of %d of %d groups after %v: %w",
					j+1, i, count, groupsReadyTimeout(count), err)
			}
		}
		prog.report(GroupsPhaseElect, int64(i+1), int64(count))
	}
	return nil
}

// idleCPU measures the process's CPU time over d of wall time doing nothing.
func idleCPU(ctx context.Context, phase string, d time.Duration, prog *groupsReporter) (cpu, wall time.Duration, err error) {
	start := time.Now()
	cpu0 := processCPU()
	end := time.NewTimer(d)
	defer end.Stop()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return 0, 0, fmt.Errorf("groups: interrupted: %w", ctx.Err())
		case <-tick.C:
			prog.report(phase, time.Since(start).Milliseconds(), d.Milliseconds())
		case <-end.C:
			cpu, wall = processCPU()-cpu0, time.Since(start)
			prog.report(phase, d.Milliseconds(), d.Milliseconds())
			return cpu, wall, nil
		}
	}
}

// groupPut proposes one put of key g%06d(i) to group i through its leader's Host.
func groupPut(ctx context.Context, c *groupsCluster, i int, value []byte) error {
	cmds := []store.Command{{Op: store.OpPut, Key: groupKey(i), Value: value}}
	r, err := c.leaderHost(groupRange(i)).Propose(ctx, groupRange(i), cmds)
	if err == nil && r.Code != store.ResultApplied {
		err = fmt.Errorf("range %d: put %s: %v (%v)", groupRange(i), groupKey(i), r.Code, r.Err)
	}
	return err
}

// writeGroups proposes one put to each of the first count groups, 64 at a time.
func writeGroups(ctx context.Context, c *groupsCluster, count int, prog *groupsReporter) (ok, failed int, firstErr error) {
	var (
		next, done atomic.Int64
		mu         sync.Mutex
		wg         sync.WaitGroup
	)
	value := []byte("kvbench groups")
	for range min(count, 64) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= count || ctx.Err() != nil {
					return
				}
				err := groupPut(ctx, c, i, value)
				mu.Lock()
				if err != nil {
					failed++
					if firstErr == nil {
						firstErr = err
					}
				} else {
					ok++
				}
				mu.Unlock()
				done.Add(1)
			}
		})
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			prog.report(GroupsPhaseWrite, done.Load(), int64(count))
		case <-finished:
			prog.report(GroupsPhaseWrite, done.Load(), int64(count))
			return ok, failed, firstErr
		}
	}
}

// writeRate runs writers writers for d, each doing one put at a time: writer w writes to groups
// w, w+writers, w+2·writers, … (mod groups) in turn, so that every one of the first groups groups
// is written to and the writers spread evenly over them.
func writeRate(ctx context.Context, c *groupsCluster, phase string, groups, writers int, d time.Duration, prog *groupsReporter) (*GroupsWriteRate, error) {
	var (
		puts, errs atomic.Int64
		mu         sync.Mutex
		firstErr   error
		wg         sync.WaitGroup
	)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	value := bytes.Repeat([]byte("v"), 100)
	start, cpu0 := time.Now(), processCPU()
	for w := range writers {
		wg.Go(func() {
			for k := 0; wctx.Err() == nil; k++ {
				i := (w + k*writers) % groups
				if err := groupPut(wctx, c, i, value); err != nil {
					if wctx.Err() != nil {
						return // cut short by the end of the run: neither counted nor an error
					}
					errs.Add(1)
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					continue
				}
				puts.Add(1)
			}
		})
	}
	end := time.NewTimer(d)
	defer end.Stop()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for running := true; running; {
		select {
		case <-ctx.Done():
			running = false
		case <-tick.C:
			prog.report(phase, time.Since(start).Milliseconds(), d.Milliseconds())
		case <-end.C:
			running = false
		}
	}
	// Puts that complete after the deadline are not counted: the rate is over d exactly.
	n, nerr := puts.Load(), errs.Load()
	wall, cpu := time.Since(start), processCPU()-cpu0
	cancel()
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("groups: interrupted: %w", err)
	}
	prog.report(phase, d.Milliseconds(), d.Milliseconds())
	r := &GroupsWriteRate{
		Groups:   groups,
		Puts:     n,
		Errors:   nerr,
		PutsPerS: math.Round(float64(n) / wall.Seconds()),
		CPUCores: round3(cpu.Seconds() / wall.Seconds()),
	}
	if firstErr != nil {
		r.FirstError = firstErr.Error()
	}
	return r, nil
}

// groupsReporter calls a GroupsConfig.Progress at most about five times a second per phase,
// always at the end of a phase.
type groupsReporter struct {
	f     func(GroupsProgress)
	phase string
	last  time.Time
}

func (r *groupsReporter) report(phase string, done, total int64) {
	if r.f == nil {
		return
	}
	now := time.Now()
	if phase == r.phase && done < total && now.Sub(r.last) < 200*time.Millisecond {
		return
	}
	r.phase, r.last = phase, now
	r.f(GroupsProgress{Phase: phase, Done: done, Total: total})
}

func (r *groupsReporter) finish() {
	if r.f != nil {
		r.f(GroupsProgress{Finished: true})
	}
}

// memSample is the process's memory in MiB: resident set and live Go heap.
type memSample struct{ rss, heap float64 }

const mib = 1 << 20

// settledMemory collects garbage, returns the freed pages to the OS and then samples memory,
// so that two samples differ by what is live, not by what the GC had not yet swept or
// released.
func settledMemory() (memSample, error) {
	debug.FreeOSMemory()
	rss, err := processRSS()
	if err != nil {
		return memSample{}, err
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memSample{rss: float64(rss) / mib, heap: float64(ms.HeapAlloc) / mib}, nil
}

// processRSS is the process's resident set size in bytes: VmRSS of /proc/self/status (Linux).
func processRSS() (int64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, fmt.Errorf("read RSS: %w", err)
	}
	defer f.Close()
	return parseVmRSS(f)
}

// parseVmRSS finds the line "VmRSS:   <n> kB" in a /proc/<pid>/status.
func parseVmRSS(r io.Reader) (int64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		rest, ok := bytes.CutPrefix(sc.Bytes(), []byte("VmRSS:"))
		if !ok {
			continue
		}
		num, ok := bytes.CutSuffix(bytes.TrimSpace(rest), []byte(" kB"))
		if !ok {
			return 0, fmt.Errorf("read RSS: unexpected VmRSS line %q", sc.Text())
		}
		kb, err := strconv.ParseInt(string(bytes.TrimSpace(num)), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("read RSS: %w", err)
		}
		return kb << 10, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read RSS: %w", err)
	}
	return 0, errors.New("read RSS: no VmRSS line in /proc/self/status")
}

// WriteGroupsTable writes r as a table aligned for a terminal: costs, then write throughput
// if it was measured.
func WriteGroupsTable(w io.Writer, r *GroupsResult) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "groups\treplicas\tcreate\tRSS before\tRSS after\tRSS/replica\theap/replica\tgoroutines\tidle cores\twrites ok\t")
	writes := "-"
	if r.Write {
		writes = fmt.Sprintf("%d/%d", r.WritesOK, r.Groups)
	}
	idle := "-"
	if r.IdleS > 0 {
		idle = fmt.Sprintf("%.3f", r.IdleCores)
	}
	fmt.Fprintf(tw, "%d\t%d\t%.2fs\t%.1f MiB\t%.1f MiB\t%.3f MiB\t%.3f MiB\t%d\t%s\t%s\t\n", r.Groups, r.Replicas,
		r.CreateS, r.RSSBeforeMiB, r.RSSAfterMiB, r.RSSPerReplicaMiB, r.HeapPerReplicaMiB, r.Goroutines, idle, writes)
	if err := tw.Flush(); err != nil {
		return err
	}
	if r.All == nil || r.Hot == nil {
		return nil
	}
	fmt.Fprintf(w, "\n%d writers, %gs each:\n", r.ThroughputWriters, r.ThroughputS)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "groups written\tputs/s\terrors\tCPU cores\t")
	for _, wr := range []*GroupsWriteRate{r.All, r.Hot} {
		fmt.Fprintf(tw, "%d\t%.0f\t%d\t%.2f\t\n", wr.Groups, wr.PutsPerS, wr.Errors, wr.CPUCores)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%d groups ÷ all: %.2f\n", r.HotGroups, r.HotOverAll)
	return err
}

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }
