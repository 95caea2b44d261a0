package raftgroup

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/lni/dragonboat/v4/logger"
)

// dragonboat's loggers are process-wide (one per package name, created through one factory that
// may be installed only once per process). bondkv installs that factory the first time a Host is
// created and routes every message to the *slog.Logger of one live Host — the oldest one still
// open — tagged with the dragonboat package name. With no live Host, messages are dropped.
//
// dragonboat is chatty: it logs every election of every group as a warning. Its levels are
// mapped down so that an application logger at the usual Info level stays quiet in normal
// operation: Debug and Info → below slog's Debug, Warning → Debug, Error → Warn. Its Panicf
// logs at Error and still panics.

var logRouter = &dragonboatLogRouter{}

type dragonboatLogRouter struct {
	once  sync.Once
	mu    sync.Mutex
	sinks []*slog.Logger // registration order; the first one receives
}

// RouteDragonboatLogs routes dragonboat's process-wide logs to l (see above) until the returned
// function is called. NewHost calls it for the Host's logger; a program that runs dragonboat
// directly (a baseline) calls it before creating a NodeHost.
func RouteDragonboatLogs(l *slog.Logger) (unregister func()) { return logRouter.register(l) }

func (r *dragonboatLogRouter) register(l *slog.Logger) func() {
	r.once.Do(func() { logger.SetLoggerFactory(r.newLogger) })
	r.mu.Lock()
	r.sinks = append(r.sinks, l)
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		for i, s := range r.sinks {
			if s == l {
				r.sinks = append(r.sinks[:i], r.sinks[i+1:]...)
				return
			}
		}
	}
}

func (r *dragonboatLogRouter) current() *slog.Logger {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.sinks) == 0 {
		return nil
	}
	return r.sinks[0]
}

func (r *dragonboatLogRouter) newLogger(pkg string) logger.ILogger {
	return &routedLogger{router: r, pkg: pkg}
}

type routedLogger struct {
	router *dragonboatLogRouter
	pkg    string
}

func (l *routedLogger) log(level slog.Level, format string, args []any) {
	sink := l.router.current()
	if sink == nil || !sink.Enabled(context.Background(), level) {
		return
	}
	sink.LogAttrs(context.Background(), level, fmt.Sprintf(format, args...), slog.String("component", "dragonboat/"+l.pkg))
}

// SetLevel is ignored: the level is the slog handler's.
func (l *routedLogger) SetLevel(logger.LogLevel)         {}
func (l *routedLogger) Debugf(format string, a ...any)   { l.log(slog.LevelDebug-8, format, a) }
func (l *routedLogger) Infof(format string, a ...any)    { l.log(slog.LevelDebug-4, format, a) }
func (l *routedLogger) Warningf(format string, a ...any) { l.log(slog.LevelDebug, format, a) }
func (l *routedLogger) Errorf(format string, a ...any)   { l.log(slog.LevelWarn, format, a) }
func (l *routedLogger) Panicf(format string, a ...any) {
	l.log(slog.LevelError, format, a)
	panic(fmt.Sprintf(format, a...))
}
