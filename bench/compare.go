package bench

import (
	"context"
	"fmt"
)

// RunPutComparison runs the put benchmark of cfg on each engine in turn (cfg.Engine is ignored)
// and compares each to the first. An engine that fails is reported in its Result.Error and the
// others still run; the error is for a bad configuration or ctx cancelled.
func RunPutComparison(ctx context.Context, cfg PutConfig, engines []string) (*Comparison, error) {
	if len(engines) == 0 {
		return nil, fmt.Errorf("no engine to compare")
	}
	for _, name := range engines {
		c := cfg
		c.Engine = name
		if err := c.Validate(); err != nil {
			return nil, err
		}
	}
	results := make([]*Result, 0, len(engines))
	for _, name := range engines {
		c := cfg
		c.Engine = name
		r, err := RunPut(ctx, c)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: interrupted: %w", name, ctx.Err())
		}
		if err != nil {
			r = newResult(c)
			r.Error = err.Error()
		}
		results = append(results, r)
	}
	return NewComparison(engines[0], results), nil
}
