package main

import (
	"fmt"
	"io"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/bondkv/bondkv/bench"
)

// progressBar shows a running benchmark on a terminal: one bar per engine, cleared when the
// engine is done (the results go to stdout).
type progressBar struct {
	w   io.Writer
	bar *progressbar.ProgressBar
}

func newProgressBar(w io.Writer) *progressBar { return &progressBar{w: w} }

// update is a bench.PutConfig.Progress: it is called from one goroutine at a time.
func (p *progressBar) update(pr bench.Progress) {
	if pr.Steps > 0 {
		p.step(pr)
		return
	}
	if p.bar == nil {
		p.bar = progressbar.NewOptions64(pr.Total.Milliseconds(),
			progressbar.OptionSetWriter(p.w),
			progressbar.OptionSetWidth(30),
			progressbar.OptionSetPredictTime(false),
			progressbar.OptionSetElapsedTime(false),
			progressbar.OptionClearOnFinish(),
			progressbar.OptionSetRenderBlankState(true),
			progressbar.OptionSetDescription(pr.Engine))
	}
	if pr.Done {
		p.bar.Finish()
		p.bar = nil
		return
	}
	phase := "ops/s"
	if pr.Warmup {
		phase = "ops/s (warm-up)"
	}
	p.bar.Describe(fmt.Sprintf("%-11s %5.1fs/%.0fs %9.0f %s", pr.Engine,
		pr.Elapsed.Seconds(), pr.Total.Round(time.Second).Seconds(), pr.OpsPerSec, phase))
	p.bar.Set64(pr.Elapsed.Milliseconds())
}

// step shows a preparation (pre-splitting) as steps done.
func (p *progressBar) step(pr bench.Progress) {
	if p.bar == nil {
		p.bar = progressbar.NewOptions(pr.Steps,
			progressbar.OptionSetWriter(p.w),
			progressbar.OptionSetWidth(30),
			progressbar.OptionClearOnFinish(),
			progressbar.OptionSetRenderBlankState(true))
	}
	p.bar.Describe(fmt.Sprintf("%-11s pre-split %d/%d ranges %5.1fs", pr.Engine, pr.Step+1, pr.Steps+1, pr.Elapsed.Seconds()))
	_ = p.bar.Set(pr.Step)
	if pr.Done {
		_ = p.bar.Finish()
		p.bar = nil
	}
}
