package main

import (
	"fmt"
	"io"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/bondkv/bondkv/bench"
)

func newGroupsCmd(stdout, stderr io.Writer) *cobra.Command {
	f := &groupsFlags{cfg: bench.DefaultGroupsConfig(), stdout: stdout, stderr: stderr}
	cmd := &cobra.Command{
		Use:   "groups",
		Short: "Memory, start-up time, idle CPU and write throughput of many Raft groups",
		Long: `groups measures what Raft groups cost: it starts a cluster of three nodes in this process
(one storage engine and one Raft host each, bondkv's default configuration, loopback TCP),
starts --count groups (ranges 3, 4, ...; group i owns the keys [g%06d(i), g%06d(i+1))), each
with a replica on every node, so 3 x count replicas; waits until every node knows every
group's leader, and reports:

  create       from the first group started until every group has a leader (one
               randomized election timeout, 1-2 s, is the floor)
  RSS          the process's resident memory after a GC that returns freed pages to the OS,
               before the Raft hosts started (engines open) and once every group has a leader;
               per replica = (after - before) / (3 x count), the hosts' fixed cost included
  heap         the same for the live Go heap (counts preallocated buffers not yet touched)
  goroutines   once every group has a leader
  idle cores   process CPU time (user+system) over --idle with nothing to do, in cores,
               measured after --settle

With --write it then proposes one put to every group and counts those applied.

With --throughput D (default 5s; 0 skips it) it then runs --writers writers, each with one
100-byte put in flight through the group's leader, for D round-robin over all the groups, then
for D over --hot groups only, and reports puts/s and CPU of each and their ratio.

JSON (--json, last line of stdout):
  bench ("groups"), groups, nodes, replicas, cpus, rtt_ms, election_rtt, heartbeat_rtt,
  quiesce, host_s, start_s, create_s, rss_before_mib, rss_after_mib, rss_per_group_mib,
  rss_per_replica_mib, heap_before_mib, heap_after_mib, heap_per_group_mib,
  heap_per_replica_mib, goroutines, settle_s, idle_s, idle_cores, write, writes_ok,
  write_errors, write_s, goroutines_after_write, first_error, throughput_s,
  throughput_writers, hot_groups, all and hot ({groups, puts, errors, puts_per_s, cpu_cores,
  first_error}), hot_over_all

RSS is read from /proc/self/status (Linux).

Exit status: 0 on success, 1 if the benchmark failed or a --write put failed, 2 for a bad
command line.`,
		Example: `  kvbench groups --count 1000
  kvbench groups --count 1000 --idle 10s --write --json`,
		Args:          noArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE:          f.run,
	}
	cmd.SetFlagErrorFunc(flagError)
	fs := cmd.Flags()
	fs.IntVar(&f.cfg.Count, "count", f.cfg.Count, "number of single-replica Raft groups to start")
	fs.DurationVar(&f.cfg.Settle, "settle", f.cfg.Settle, "how long to wait once every group has a leader before measuring idle CPU")
	fs.DurationVar(&f.cfg.Idle, "idle", f.cfg.Idle, "how long idle CPU is measured after --settle (0 = skip)")
	fs.BoolVar(&f.cfg.Write, "write", false, "after the idle window, propose one put to every group")
	fs.DurationVar(&f.cfg.Throughput, "throughput", f.cfg.Throughput, "length of each write throughput run, over all groups then over --hot (0 = skip)")
	fs.IntVar(&f.cfg.Writers, "writers", f.cfg.Writers, "writers of the throughput runs, each with one put in flight")
	fs.IntVar(&f.cfg.HotGroups, "hot", f.cfg.HotGroups, "groups written to in the second throughput run")
	fs.StringVar(&f.cfg.Dir, "dir", "", "keep the data under `DIR`/groups, which must not hold data yet\n(default: a temporary directory, removed afterwards)")
	fs.BoolVar(&f.json, "json", false, "also print the result as one JSON object, the last line of stdout")
	fs.BoolVarP(&f.verbose, "verbose", "v", false, "log the engine's and dragonboat's messages to stderr")
	return cmd
}

// groupsFlags are the flags of a groups benchmark, and where it writes.
type groupsFlags struct {
	cfg            bench.GroupsConfig
	json           bool
	verbose        bool
	stdout, stderr io.Writer
}

func (f *groupsFlags) run(cmd *cobra.Command, _ []string) error {
	cfg := f.cfg
	if err := cfg.Validate(); err != nil {
		return usageError{cmd: cmd.CommandPath(), err: err}
	}
	cfg.Logger = runLogger(f.verbose, f.stderr)
	if showProgress(f.json, f.verbose, f.stderr) {
		cfg.Progress = (&groupsProgressBar{w: f.stderr}).update
	}
	r, err := bench.RunGroups(cmd.Context(), cfg)
	if err != nil {
		return err
	}
	if err := bench.WriteGroupsTable(f.stdout, r); err != nil {
		return err
	}
	if f.json {
		if err := bench.WriteJSON(f.stdout, r); err != nil {
			return err
		}
	}
	if r.Write && r.WritesOK < r.Groups {
		return fmt.Errorf("groups: %d of %d puts failed (first error: %s)", r.Groups-r.WritesOK, r.Groups, r.FirstError)
	}
	return nil
}

// groupsProgressBar shows a running groups benchmark on a terminal: one bar per phase, cleared
// at the end (the results go to stdout).
type groupsProgressBar struct {
	w     io.Writer
	phase string
	bar   *progressbar.ProgressBar
}

// update is a bench.GroupsConfig.Progress: it is called from one goroutine.
func (p *groupsProgressBar) update(pr bench.GroupsProgress) {
	if pr.Finished || pr.Phase != p.phase {
		if p.bar != nil {
			p.bar.Finish()
			p.bar = nil
		}
		if pr.Finished {
			return
		}
	}
	if p.bar == nil {
		p.phase = pr.Phase
		p.bar = progressbar.NewOptions64(pr.Total,
			progressbar.OptionSetWriter(p.w),
			progressbar.OptionSetWidth(30),
			progressbar.OptionSetPredictTime(false),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionClearOnFinish(),
			progressbar.OptionSetRenderBlankState(true))
	}
	var desc string
	switch pr.Phase {
	case bench.GroupsPhaseStart:
		desc = fmt.Sprintf("starting groups   %d/%d", pr.Done, pr.Total)
	case bench.GroupsPhaseElect:
		desc = fmt.Sprintf("awaiting leaders  %d/%d", pr.Done, pr.Total)
	case bench.GroupsPhaseIdle:
		desc = fmt.Sprintf("idle CPU          %.1fs/%.0fs", float64(pr.Done)/1e3, float64(pr.Total)/1e3)
	case bench.GroupsPhaseSettle:
		desc = fmt.Sprintf("settling          %.1fs/%.0fs", float64(pr.Done)/1e3, float64(pr.Total)/1e3)
	case bench.GroupsPhaseAll:
		desc = fmt.Sprintf("puts, all groups  %.1fs/%.0fs", float64(pr.Done)/1e3, float64(pr.Total)/1e3)
	case bench.GroupsPhaseHot:
		desc = fmt.Sprintf("puts, hot groups  %.1fs/%.0fs", float64(pr.Done)/1e3, float64(pr.Total)/1e3)
	case bench.GroupsPhaseWrite:
		desc = fmt.Sprintf("one put per group %d/%d", pr.Done, pr.Total)
	}
	p.bar.Describe(desc)
	p.bar.Set64(pr.Done)
}
