package rpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/bondkv/bondkv/internal/base"
)

const (
	// ServiceName is the gRPC service every method is registered under: a method "Get" is
	// called as "/bondkv.Node/Get".
	ServiceName = "bondkv.Node"
	// MaxMessageSize is the largest request or response, in bytes, the node service sends or
	// accepts. A larger one fails the call (gRPC code ResourceExhausted).
	MaxMessageSize = 64 << 20
	// DefaultCallTimeout bounds a Call whose context has no deadline.
	DefaultCallTimeout = 10 * time.Second

	// stopGrace is how long Stop lets running handlers finish before it cancels them.
	stopGrace = 5 * time.Second
	// Keep-alive: a client pings a connection idle for pingInterval and drops it when the
	// answer takes longer than pingTimeout. gRPC refuses intervals under 10 s (it raises them
	// and logs a warning), so an idle dead peer is noticed within about 13 s; a call in flight
	// is bounded by its deadline.
	pingInterval = 10 * time.Second
	pingTimeout  = 3 * time.Second
	// A dial that fails is retried after reconnectBase, growing to reconnectMax; calls made
	// meanwhile fail fast with ErrUnavailable.
	reconnectBase = 100 * time.Millisecond
	reconnectMax  = 3 * time.Second
	dialTimeout   = 5 * time.Second
)

// ErrUnavailable means the peer could not be reached: the request was not delivered to any
// handler, so it is safe to retry, here or elsewhere.
var ErrUnavailable = errors.New("rpc: peer unavailable")

// ErrUnknownMethod means the peer has no handler for the method.
var ErrUnknownMethod = errors.New("rpc: unknown method")

// RemoteError is a handler's error, delivered to the caller as its message only.
type RemoteError struct {
	Method string // the method called
	Msg    string // the handler's err.Error()
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("rpc: %s: remote error: %s", e.Method, e.Msg)
}

// Handler serves one method. req is owned by the handler. The response must not be modified
// after the handler returns. An error returned is delivered to the caller as *RemoteError
// (application errors that callers must match should be encoded in the response bytes by the
// handler instead). ctx is cancelled when the caller gives up, when its deadline (which
// travels with the call) passes, or when Stop's grace period ends.
type Handler func(ctx context.Context, req []byte) ([]byte, error)

// Server serves the node service's methods over gRPC.
type Server struct {
	log *slog.Logger
	srv *grpc.Server

	mu         sync.Mutex
	handlers   map[string]Handler
	registered bool // the service was registered with srv: no more Handle
	stopped    bool
	grace      time.Duration
	stopDone   chan struct{} // closed when the first Stop returns
}

// NewServer returns a server with no methods. logger nil = discard.
func NewServer(logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Server{
		log: logger.With("component", "rpc-server"),
		srv: grpc.NewServer(
			grpc.ForceServerCodecV2(rawCodec{}),
			grpc.MaxRecvMsgSize(MaxMessageSize),
			grpc.MaxSendMsgSize(MaxMessageSize),
			grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
				MinTime: pingInterval / 2, PermitWithoutStream: true}),
			grpc.KeepaliveParams(keepalive.ServerParameters{Time: pingInterval, Timeout: pingTimeout}),
			grpc.WaitForHandlers(true),
		),
		handlers: make(map[string]Handler),
		grace:    stopGrace,
		stopDone: make(chan struct{}),
	}
}

// Handle registers h as method. It must be called before Serve; a method registered twice, an
// empty name or one containing '/' panics.
func (s *Server) Handle(method string, h Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.registered:
		panic(fmt.Sprintf("rpc: Handle(%q) after Serve", method))
	case method == "" || strings.Contains(method, "/"):
		panic(fmt.Sprintf("rpc: invalid method name %q", method))
	case s.handlers[method] != nil:
		panic(fmt.Sprintf("rpc: method %q registered twice", method))
	case h == nil:
		panic(fmt.Sprintf("rpc: nil handler for %q", method))
	}
	s.handlers[method] = h
}

// Serve accepts connections on ln and serves them until Stop, then returns nil. It closes ln.
// It may be called for several listeners. After Stop it closes ln and returns an error
// matching base.ErrClosed.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		ln.Close()
		return fmt.Errorf("rpc: serve: %w", base.ErrClosed)
	}
	if !s.registered {
		s.registered = true
		s.srv.RegisterService(s.serviceDesc(), nil)
	}
	s.mu.Unlock()
	err := s.srv.Serve(ln)
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("rpc: serve on %s: %w", ln.Addr(), err)
	}
	return nil
}

// serviceDesc describes the registered methods. s.mu is held.
func (s *Server) serviceDesc() *grpc.ServiceDesc {
	desc := &grpc.ServiceDesc{ServiceName: ServiceName, HandlerType: (*any)(nil)}
	for name, h := range s.handlers {
		desc.Methods = append(desc.Methods, grpc.MethodDesc{
			MethodName: name,
			Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
				var req []byte
				if err := dec(&req); err != nil {
					return nil, err
				}
				resp, err := h(ctx, req)
				if err != nil {
					return nil, handlerStatus(ctx, err)
				}
				return resp, nil
			},
		})
	}
	return desc
}

// handlerStatus turns a handler's error into the status the caller receives. Every error is
// codes.Unknown (a gRPC status the handler got from a call of its own must not pass for this
// call's), except that the end of the call's own context stays recognisable as such.
func handlerStatus(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil && errors.Is(err, ctxErr) {
		return status.FromContextError(ctxErr).Err()
	}
	return status.Error(codes.Unknown, err.Error())
}

// Stop stops accepting connections, lets running handlers finish for a short grace period
// (5 s), then closes every connection and cancels the handlers' contexts, and returns once
// every handler has returned. Serve returns nil. Stop is idempotent; a second call waits for
// the first.
func (s *Server) Stop() {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		<-s.stopDone
		return
	}
	s.stopped = true
	grace := s.grace
	s.mu.Unlock()
	defer close(s.stopDone)

	graceful := make(chan struct{})
	go func() {
		s.srv.GracefulStop()
		close(graceful)
	}()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-graceful:
		return
	case <-t.C:
	}
	s.log.Info("handlers still running after the grace period; cancelling them", "grace", grace)
	s.srv.Stop()
	<-graceful
}

// Client calls the node service of other nodes. It is safe for concurrent use.
type Client struct {
	log  *slog.Logger
	opts []grpc.DialOption

	mu     sync.Mutex
	closed bool
	conns  map[string]*grpc.ClientConn // by address
}

// NewClient returns a client that opens connections with dial (nil = TCP with keep-alive).
// Tests and nodes pass netsim.Network.Dialer(node) here. logger nil = discard.
func NewClient(dial func(ctx context.Context, addr string) (net.Conn, error), logger *slog.Logger) *Client {
	if dial == nil {
		d := &net.Dialer{KeepAlive: keepAlive}
		dial = func(ctx context.Context, addr string) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", addr)
		}
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Client{
		log: logger.With("component", "rpc-client"),
		opts: []grpc.DialOption{
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(dial),
			grpc.WithDefaultCallOptions(
				grpc.ForceCodecV2(rawCodec{copyOut: true}),
				grpc.MaxCallRecvMsgSize(MaxMessageSize),
				grpc.MaxCallSendMsgSize(MaxMessageSize),
			),
			grpc.WithKeepaliveParams(keepalive.ClientParameters{
				Time: pingInterval, Timeout: pingTimeout, PermitWithoutStream: true}),
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff: backoff.Config{
					BaseDelay: reconnectBase, Multiplier: 1.6, Jitter: 0.2, MaxDelay: reconnectMax},
				MinConnectTimeout: dialTimeout,
			}),
			grpc.WithStatsHandler(sendTracker{}),
		},
		conns: make(map[string]*grpc.ClientConn),
	}
}

// conn returns the cached connection to addr, creating it (without dialing) if needed.
func (c *Client) conn(addr string) (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, base.ErrClosed
	}
	if cc := c.conns[addr]; cc != nil {
		return cc, nil
	}
	// passthrough: addr goes to the dialer as it is, with no name resolution by gRPC.
	cc, err := grpc.NewClient("passthrough:///"+addr, c.opts...)
	if err != nil {
		return nil, err
	}
	c.conns[addr] = cc
	c.log.Debug("new connection", "peer", addr)
	return cc, nil
}

// Call invokes method at addr and returns its response. Connections are cached per address
// and closed by Close or Forget. Without a ctx deadline, DefaultCallTimeout applies. req is
// not retained after Call returns.
//
// Errors:
//   - wrapping ErrUnavailable: the request was certainly not delivered (the peer could not be
//     reached; if ctx ended meanwhile, the error wraps ctx's error too);
//   - wrapping context.DeadlineExceeded or context.Canceled: the call ended after the request
//     was sent; the handler may or may not have run;
//   - wrapping ErrUnknownMethod: the peer has no such method;
//   - *RemoteError: the handler returned an error;
//   - wrapping base.ErrClosed: the client is closed;
//   - anything else (e.g. the connection broke after the request was sent): ambiguous.
func (c *Client) Call(ctx context.Context, addr, method string, req []byte) ([]byte, error) {
	cc, err := c.conn(addr)
	if err != nil {
		return nil, fmt.Errorf("rpc: call %s at %s: %w", method, addr, err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultCallTimeout)
		defer cancel()
	}
	var sent atomic.Bool
	var resp []byte
	err = cc.Invoke(context.WithValue(ctx, sentKey{}, &sent), "/"+ServiceName+"/"+method, req, &resp)
	if err == nil {
		return resp, nil
	}
	return nil, callError(ctx, addr, method, sent.Load(), err)
}

// callError classifies the error of a call; sent says whether the request may have left.
func callError(ctx context.Context, addr, method string, sent bool, err error) error {
	st, isStatus := status.FromError(err)
	if ctxErr := ctx.Err(); ctxErr != nil {
		if !sent {
			return fmt.Errorf("rpc: call %s at %s: %w (%w): %s", method, addr, ErrUnavailable, ctxErr, st.Message())
		}
		return fmt.Errorf("rpc: call %s at %s: %w", method, addr, ctxErr)
	}
	if !isStatus { // gRPC returns statuses only; be safe rather than misread one
		return fmt.Errorf("rpc: call %s at %s: %w", method, addr, err)
	}
	switch st.Code() {
	case codes.Unknown:
		return &RemoteError{Method: method, Msg: st.Message()}
	case codes.Unimplemented:
		return fmt.Errorf("rpc: call %s at %s: %w", method, addr, ErrUnknownMethod)
	case codes.DeadlineExceeded: // the handler's copy of the deadline passed first
		return fmt.Errorf("rpc: call %s at %s: %w", method, addr, context.DeadlineExceeded)
	case codes.Unavailable, codes.Canceled: // Canceled: Forget or Close closed the connection
		if !sent {
			return fmt.Errorf("rpc: call %s at %s: %w: %s", method, addr, ErrUnavailable, st.Message())
		}
	}
	return fmt.Errorf("rpc: call %s at %s: %w", method, addr, err)
}

// Forget closes and drops the cached connection to addr (the peer moved or died). Calls in
// flight on it fail; the next Call dials again.
func (c *Client) Forget(addr string) {
	c.mu.Lock()
	cc := c.conns[addr]
	delete(c.conns, addr)
	c.mu.Unlock()
	if cc != nil {
		c.log.Debug("connection forgotten", "peer", addr)
		cc.Close()
	}
}

// Close closes every connection; calls in flight fail and later calls return an error
// matching base.ErrClosed. It is idempotent.
func (c *Client) Close() error {
	c.mu.Lock()
	conns := c.conns
	c.conns, c.closed = nil, true
	c.mu.Unlock()
	for _, cc := range conns {
		cc.Close()
	}
	return nil
}

// sentKey carries, in a call's context, the *atomic.Bool that sendTracker sets once the
// call's request headers are handed to a connection: from then on the request may reach the
// handler. Before that (no connection, dial failed, connection already known broken) it
// certainly has not.
type sentKey struct{}

// sendTracker is the client's stats.Handler.
type sendTracker struct{}

func (sendTracker) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (sendTracker) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (sendTracker) HandleConn(context.Context, stats.ConnStats) {}
func (sendTracker) HandleRPC(ctx context.Context, s stats.RPCStats) {
	switch s.(type) {
	case *stats.OutHeader, *stats.OutPayload:
		if sent, ok := ctx.Value(sentKey{}).(*atomic.Bool); ok {
			sent.Store(true)
		}
	}
}

// rawCodec passes []byte messages through unchanged: the node service has no protobuf
// schema, its handlers define their own encodings. It is given to gRPC per server and per
// client, never registered globally.
type rawCodec struct {
	// copyOut copies outgoing messages: gRPC may still be writing a request after Call
	// returns (the call was cancelled), and the caller owns req again by then.
	copyOut bool
}

func (rawCodec) Name() string { return "bondkv-raw" }

func (c rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	b, ok := v.([]byte)
	if !ok {
		return nil, fmt.Errorf("rpc: raw codec cannot marshal %T", v)
	}
	if c.copyOut && len(b) > 0 {
		return mem.BufferSlice{mem.Copy(b, mem.DefaultBufferPool())}, nil
	}
	return mem.BufferSlice{mem.SliceBuffer(b)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	p, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("rpc: raw codec cannot unmarshal into %T", v)
	}
	*p = data.Materialize()
	return nil
}
