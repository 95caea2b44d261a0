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
	// Count is the number of groups, 1 to MaxGroups.
	Count int
	// Idle is how long the idle CPU use is measured once every group has a leader (0 = not
	// measured).
	Idle time.Duration
	// Write proposes one put to every group after the idle window.
	Write bool
	// Dir, if set, holds the data under Dir/groups (which must not hold anything yet) and is
	// kept. If empty, the data goes to a fresh temporary directory removed afterwards.
	Dir string
	// Logger receives the engine's and dragonboat's logs. nil = discard.
	Logger *slog.Logger
	// Progress, if set, is called from RunGroups's goroutine at most about five times a second
	// per phase, at the end of each phase, and once more with Finished set.
	Progress func(GroupsProgress)
}

// MaxGroups is the largest GroupsConfig.Count: the group keys g%06d have six digits.
const MaxGroups = 999_999

// DefaultGroupsConfig is the configuration kvbench groups starts from.
func DefaultGroupsConfig() GroupsConfig {
	return GroupsConfig{Count: 100, Idle: 5 * time.Second}
}

// Validate reports every problem with c at once.
func (c GroupsConfig) Validate() error {
	var errs []error
	if c.Count < 1 || c.Count > MaxGroups {
		errs = append(errs, fmt.Errorf("count must be between 1 and %d, got %d", MaxGroups, c.Count))
	}
	if c.Idle < 0 {
		errs = append(errs, fmt.Errorf("idle must not be negative, got %v", c.Idle))
	}
	return errors.Join(errs...)
}

// Groups benchmark phases, as reported in GroupsProgress.Phase.
const (
	GroupsPhaseStart = "start" // StartReplica calls; Done and Total count groups
	GroupsPhaseElect = "elect" // waiting for leaders; groups with a leader
	GroupsPhaseIdle  = "idle"  // the idle window; milliseconds
	GroupsPhaseWrite = "write" // one put per group; puts finished
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
	Bench  string `json:"bench"` // "groups"
	Groups int    `json:"groups"`
	CPUs   int    `json:"cpus"` // GOMAXPROCS
	// The Raft settings the groups ran with (bondkv's defaults).
	RTTMs       uint64 `json:"rtt_ms"`
	ElectionRTT uint64 `json:"election_rtt"`

	HostS   float64 `json:"host_s"`   // raftgroup.NewHost
	StartS  float64 `json:"start_s"`  // the StartReplica calls alone
	CreateS float64 `json:"create_s"` // first StartReplica until every group has a leader

	// Settled process RSS before NewHost (engine open) and once every group has a leader, and
	// (after − before)/Groups.
	RSSBeforeMiB   float64 `json:"rss_before_mib"`
	RSSAfterMiB    float64 `json:"rss_after_mib"`
	RSSPerGroupMiB float64 `json:"rss_per_group_mib"`
	// The same for the Go heap (live bytes after a GC). Memory the heap holds but has never
	// touched (zeroed pages fresh from the OS) counts here and not in RSS.
	HeapBeforeMiB   float64 `json:"heap_before_mib"`
	HeapAfterMiB    float64 `json:"heap_after_mib"`
	HeapPerGroupMiB float64 `json:"heap_per_group_mib"`
	// Goroutines in the process once every group has a leader.
	Goroutines int `json:"goroutines"`

	// IdleCores is the process's CPU time (user + system) over the idle window of IdleS
	// seconds, divided by its length.
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
}

// groupsNode is the benchmark node's ID.
const groupsNode base.NodeID = 1

// groupsWriters is how many puts are in flight at once in the write phase.
const groupsWriters = 64

// groupsReadyTimeout bounds the wait for every group's first leader: one randomized election
// timeout (up to 2 s by default) plus generous room for a loaded 2-core machine.
func groupsReadyTimeout(count int) time.Duration {
	return 30*time.Second + time.Duration(count)*30*time.Millisecond
}

func groupRange(i int) base.RangeID { return base.FirstUserRangeID + base.RangeID(i) }

func groupKey(i int) []byte { return fmt.Appendf(nil, "g%06d", i) }

// groupSpan is group i's span, [g%06d(i), g%06d(i+1)): distinct, adjacent, non-overlapping.
func groupSpan(i int) base.Span { return base.Span{Start: groupKey(i), End: groupKey(i + 1)} }

// RunGroups measures what many Raft groups cost on one node: Count single-replica groups on one
// raftgroup.Host over one store.Engine, both with bondkv's default configuration (50 ms tick,
// 1 s election timeout, one-shard tiny-memory LogDB), in this process.
//
// It runs, in order:
//
//  1. store.Open in <dir>/data, then a settled memory sample (debug.FreeOSMemory: a GC that also
//     returns freed pages to the OS, then VmRSS from /proc/self/status and the Go heap): the
//     "before" figures, which include the engine but not the Host.
//  2. raftgroup.NewHost on a free loopback port, then StartReplica for group i = 0..Count-1:
//     range FirstUserRangeID+i, span [g%06d(i), g%06d(i+1)), this node its only voter; then
//     WaitLeader for every group. create_s runs from the first StartReplica until the last
//     group has a leader; a single-replica group elects itself after one randomized election
//     timeout (1–2 s), so even one group takes about a second.
//  3. A second settled memory sample (the "after" figures, per group = (after − before)/Count,
//     so it includes the Host's fixed cost, which dominates for small counts) and the goroutine
//     count.
//  4. Idle: the process's CPU time (user + system, getrusage) over Idle of wall time, in cores:
//     what heartbeats and ticks cost with nothing to do.
//  5. With Write, one put (key g%06d(i)) proposed to every group through Host.Propose, 64 at a
//     time; writes_ok counts those applied.
//
// Then the Host is closed, the engine after it, and a temporary directory removed.
//
// An error means no result: a bad configuration, the engine or Host failing to open or close,
// a group without a leader in time, or ctx cancelled. Failed writes are not errors; they are
// counted in the result.
func RunGroups(ctx context.Context, cfg GroupsConfig) (res *GroupsResult, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
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
	engine, err := store.Open(filepath.Join(dir, "data"), &store.Options{Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	defer func() { // after the Host's Close (deferred below): the Host does not close the engine
		if cerr := engine.Close(); cerr != nil && err == nil {
			res, err = nil, cerr
		}
	}()
	addrs, err := freeLoopbackAddrs(1)
	if err != nil {
		return nil, err
	}
	hcfg := raftgroup.Config{NodeID: groupsNode, Dir: dir, RaftAddress: addrs[0], Engine: engine, Logger: cfg.Logger}
	res = &GroupsResult{
		Bench:       "groups",
		Groups:      cfg.Count,
		CPUs:        runtime.GOMAXPROCS(0),
		RTTMs:       raftgroup.NodeHostConfig(hcfg).RTTMillisecond,
		ElectionRTT: raftgroup.ReplicaConfig(hcfg, groupRange(0)).ElectionRTT,
		Write:       cfg.Write,
	}

	before, err := settledMemory()
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	host, err := raftgroup.NewHost(hcfg)
	if err != nil {
		return nil, err
	}
	defer host.Close()
	res.HostS = round3(time.Since(t0).Seconds())

	n := int64(cfg.Count)
	members := map[base.NodeID]string{groupsNode: addrs[0]}
	t0 = time.Now()
	for i := range cfg.Count {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("groups: interrupted: %w", err)
		}
		r := raftgroup.Replica{Range: groupRange(i), Span: groupSpan(i), Members: members}
		if err := host.StartReplica(r); err != nil {
			return nil, fmt.Errorf("groups: group %d of %d: %w", i+1, cfg.Count, err)
		}
		prog.report(GroupsPhaseStart, int64(i+1), n)
	}
	res.StartS = round3(time.Since(t0).Seconds())
	if err := waitLeaders(ctx, host, cfg.Count, prog); err != nil {
		return nil, err
	}
	res.CreateS = round3(time.Since(t0).Seconds())

	after, err := settledMemory()
	if err != nil {
		return nil, err
	}
	res.Goroutines = runtime.NumGoroutine()
	res.RSSBeforeMiB, res.RSSAfterMiB = round2(before.rss), round2(after.rss)
	res.RSSPerGroupMiB = round3((after.rss - before.rss) / float64(cfg.Count))
	res.HeapBeforeMiB, res.HeapAfterMiB = round2(before.heap), round2(after.heap)
	res.HeapPerGroupMiB = round3((after.heap - before.heap) / float64(cfg.Count))

	if cfg.Idle > 0 {
		cpu, wall, err := idleCPU(ctx, cfg.Idle, prog)
		if err != nil {
			return nil, err
		}
		res.IdleS = round3(wall.Seconds())
		res.IdleCores = round3(cpu.Seconds() / wall.Seconds())
	}

	if cfg.Write {
		t0 = time.Now()
		ok, failed, firstErr := writeGroups(ctx, host, cfg.Count, prog)
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
	return res, nil
}

// waitLeaders waits until each of the first count groups has a leader.
func waitLeaders(ctx context.Context, host *raftgroup.Host, count int, prog *groupsReporter) error {
	wctx, cancel := context.WithTimeout(ctx, groupsReadyTimeout(count))
	defer cancel()
	for i := range count {
		if _, err := host.WaitLeader(wctx, groupRange(i)); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("groups: interrupted: %w", ctx.Err())
			}
			return fmt.Errorf("groups: %d of %d groups have a leader after %v: %w", i, count, groupsReadyTimeout(count), err)
		}
		prog.report(GroupsPhaseElect, int64(i+1), int64(count))
	}
	return nil
}

// idleCPU measures the process's CPU time over d of wall time doing nothing.
func idleCPU(ctx context.Context, d time.Duration, prog *groupsReporter) (cpu, wall time.Duration, err error) {
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
			prog.report(GroupsPhaseIdle, time.Since(start).Milliseconds(), d.Milliseconds())
		case <-end.C:
			cpu, wall = processCPU()-cpu0, time.Since(start)
			prog.report(GroupsPhaseIdle, d.Milliseconds(), d.Milliseconds())
			return cpu, wall, nil
		}
	}
}

// writeGroups proposes one put to each of the first count groups, groupsWriters at a time.
func writeGroups(ctx context.Context, host *raftgroup.Host, count int, prog *groupsReporter) (ok, failed int, firstErr error) {
	var (
		next, done atomic.Int64
		mu         sync.Mutex
		wg         sync.WaitGroup
	)
	value := []byte("kvbench groups")
	for range min(count, groupsWriters) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= count || ctx.Err() != nil {
					return
				}
				cmds := []store.Command{{Op: store.OpPut, Key: groupKey(i), Value: value}}
				r, err := host.Propose(ctx, groupRange(i), cmds)
				if err == nil && r.Code != store.ResultApplied {
					err = fmt.Errorf("range %d: put %s: %v (%v)", groupRange(i), groupKey(i), r.Code, r.Err)
				}
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

// WriteGroupsTable writes r as a two-line table, aligned for a terminal.
func WriteGroupsTable(w io.Writer, r *GroupsResult) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "groups\tcreate\tRSS before\tRSS after\tRSS/group\theap/group\tgoroutines\tidle cores\twrites ok\t")
	writes := "-"
	if r.Write {
		writes = fmt.Sprintf("%d/%d", r.WritesOK, r.Groups)
	}
	idle := "-"
	if r.IdleS > 0 {
		idle = fmt.Sprintf("%.3f", r.IdleCores)
	}
	fmt.Fprintf(tw, "%d\t%.2fs\t%.1f MiB\t%.1f MiB\t%.3f MiB\t%.3f MiB\t%d\t%s\t%s\t\n", r.Groups, r.CreateS,
		r.RSSBeforeMiB, r.RSSAfterMiB, r.RSSPerGroupMiB, r.HeapPerGroupMiB, r.Goroutines, idle, writes)
	return tw.Flush()
}

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }
