package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"text/tabwriter"
	"time"
)

// Result is one engine's measurement; its JSON form is kvbench's machine-readable output.
type Result struct {
	Bench       string  `json:"bench"` // "put"
	Engine      string  `json:"engine"`
	Nodes       int     `json:"nodes"`
	Concurrency int     `json:"concurrency"`
	ValueSize   int     `json:"value_size"`
	Keys        int64   `json:"keys"`
	Seed        uint64  `json:"seed"`
	WarmupS     float64 `json:"warmup_s"`
	DurationS   float64 `json:"duration_s"`
	CPUs        int     `json:"cpus"` // GOMAXPROCS

	// Ops counts the puts that started after the warm-up and succeeded within the window.
	Ops       int64   `json:"ops"`
	OpsPerSec float64 `json:"ops_per_sec"`
	// Latencies of those puts in microseconds; percentiles are within 0.8 % (Histogram).
	MeanUs float64 `json:"mean_us"`
	P50Us  float64 `json:"p50_us"`
	P90Us  float64 `json:"p90_us"`
	P99Us  float64 `json:"p99_us"`
	P999Us float64 `json:"p999_us"`
	MaxUs  float64 `json:"max_us"`
	// Errors counts the puts that started after the warm-up and failed within the window.
	Errors     int64  `json:"errors"`
	FirstError string `json:"first_error,omitempty"`
	// CPUCores is the process's CPU time (user+system) during the measured window divided by
	// its length; CPUUsPerOp divides that CPU time by Ops.
	CPUCores   float64 `json:"cpu_cores"`
	CPUUsPerOp float64 `json:"cpu_us_per_op"`

	// Details are engine-specific figures (see each engine), cumulative since the engine opened.
	Details map[string]any `json:"details,omitempty"`
	// Error is set, in a comparison, when this engine could not be measured.
	Error string `json:"error,omitempty"`
}

// Comparison is several engines measured in one run with the same workload, and each one's
// ratio to the baseline.
type Comparison struct {
	Bench    string    `json:"bench"` // "put"
	Compare  bool      `json:"compare"`
	Baseline string    `json:"baseline"`
	Results  []*Result `json:"results"`
	// Ratios maps each measured engine to its figures divided by the baseline's. Absent if the
	// baseline could not be measured.
	Ratios map[string]Ratios `json:"ratios,omitempty"`
}

// Ratios are an engine's figures divided by the baseline's.
type Ratios struct {
	OpsPerSec float64 `json:"ops_per_sec"` // below 1: less throughput than the baseline
	P50       float64 `json:"p50"`         // above 1: slower than the baseline
	P99       float64 `json:"p99"`
}

// NewComparison computes the ratios of results to the one of engine baseline.
func NewComparison(baseline string, results []*Result) *Comparison {
	c := &Comparison{Bench: "put", Compare: true, Baseline: baseline, Results: results}
	var b *Result
	for _, r := range results {
		if r.Engine == baseline && r.Error == "" && r.Ops > 0 {
			b = r
		}
	}
	if b == nil {
		return c
	}
	c.Ratios = make(map[string]Ratios)
	for _, r := range results {
		if r.Error != "" || r.Ops == 0 {
			continue
		}
		c.Ratios[r.Engine] = Ratios{
			OpsPerSec: ratio(r.OpsPerSec, b.OpsPerSec),
			P50:       ratio(r.P50Us, b.P50Us),
			P99:       ratio(r.P99Us, b.P99Us),
		}
	}
	return c
}

// WriteTable writes one line per result, aligned for a terminal.
func WriteTable(w io.Writer, results []*Result) error {
	return writeTable(w, results, nil)
}

// WriteTable writes the comparison: one line per engine with its ratios to the baseline.
func (c *Comparison) WriteTable(w io.Writer) error {
	return writeTable(w, c.Results, c)
}

func writeTable(w io.Writer, results []*Result, c *Comparison) error {
	width := len("engine") // engine names are left-aligned, the figures right-aligned
	for _, r := range results {
		width = max(width, len(r.Engine))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%-*s\tnodes\twriters\tvalue\tops\tops/s\tp50\tp90\tp99\tmax\terrors\tcpu/op\t", width, "engine")
	if c != nil {
		fmt.Fprintf(tw, "ops/s ÷ %s\tp50 ÷ %s\t", c.Baseline, c.Baseline)
	}
	fmt.Fprintln(tw)
	for _, r := range results {
		fmt.Fprintf(tw, "%-*s\t%d\t%d\t%dB\t", width, r.Engine, r.Nodes, r.Concurrency, r.ValueSize)
		if r.Error != "" {
			fmt.Fprintf(tw, "  failed: %s\n", r.Error)
			continue
		}
		fmt.Fprintf(tw, "%d\t%.0f\t%s\t%s\t%s\t%s\t%d\t%s\t", r.Ops, r.OpsPerSec,
			fmtMicros(r.P50Us), fmtMicros(r.P90Us), fmtMicros(r.P99Us), fmtMicros(r.MaxUs), r.Errors,
			fmtMicros(r.CPUUsPerOp))
		if c != nil {
			if q, ok := c.Ratios[r.Engine]; ok {
				fmt.Fprintf(tw, "%.3f\t%.1f×\t", q.OpsPerSec, q.P50)
			} else {
				fmt.Fprint(tw, "-\t-\t")
			}
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

// WriteJSON writes v as one line of JSON.
func WriteJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

func fmtMicros(us float64) string {
	switch d := time.Duration(us * float64(time.Microsecond)); {
	case d < time.Millisecond:
		return fmt.Sprintf("%.0fµs", us)
	case d < time.Second:
		return fmt.Sprintf("%.2fms", us/1e3)
	default:
		return fmt.Sprintf("%.2fs", us/1e6)
	}
}

func micros(d time.Duration) float64 { return math.Round(float64(d)/1e2) / 10 }

func round2(x float64) float64 { return math.Round(x*100) / 100 }

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return math.Round(a/b*1e4) / 1e4
}
