// Package flowlog writes flow logs: one JSON line per finished or refused
// flow, TCP and UDP, with AWS Global Accelerator's flow-log fields where
// they apply, to a file or standard output.
//
// It is a flow.Sink that never blocks the data path: Flow samples the
// record and hands it to a bounded queue (a full queue drops the record
// and counts it); one writer goroutine encodes and writes. The file is
// rotated by size, or by an outside tool that renames it and then calls
// Reopen (SIGHUP): lines written before the reopen are in the renamed
// file, lines after it in the new one, and none is lost that was not
// counted as dropped.
package flowlog

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anyedge/anyedge/edge/flow"
)

// Defaults of Config.
const (
	DefaultQueueSize = 65536
	DefaultMaxFiles  = 5
)

// Stdout is the Path that writes to standard output.
const Stdout = "-"

// Config configures a Writer.
type Config struct {
	// Path is the file appended to, or Stdout. Required.
	Path string
	// SampleRate is the fraction (0, 1] of flows logged; 0 means 1.
	SampleRate float64
	// QueueSize bounds the records waiting to be written (default
	// DefaultQueueSize); more are dropped and counted.
	QueueSize int
	// MaxSize, when above 0, rotates the file once it holds this many
	// bytes: Path becomes Path.1 (and Path.1 Path.2, and so on), and a new
	// Path is opened.
	MaxSize int64
	// MaxFiles is how many rotated files size rotation keeps (default
	// DefaultMaxFiles).
	MaxFiles int
	// PoP is the edge's name, written in every line.
	PoP string
	// Endpoint, when set, gives the address (host, which may be a DNS
	// name, and port) of an endpoint for a flow on listenerPort; ok is
	// false when unknown. It runs on the writer goroutine.
	Endpoint func(region, id string, listenerPort uint16) (host string, port uint16, ok bool)
	// Logger receives write errors (rate-limited) and rotations.
	Logger *slog.Logger
}

// Writer is a flow-log file. Flow is safe from any goroutine; Run writes.
type Writer struct {
	cfg    Config
	log    *slog.Logger
	queue  chan flow.Record
	reopen chan struct{}
	sample uint64 // SampleRate as a threshold over the uint64 range; 0: all

	written, queueFull, writeErrors, sampledOut, rotations atomic.Uint64

	// The file state belongs to Run's goroutine.
	file     *os.File // nil for Stdout
	out      io.Writer
	buf      *bufio.Writer
	size     int64
	pending  uint64 // lines in buf
	line     []byte
	lastWarn time.Time

	runOnce sync.Once
}

var _ flow.Sink = (*Writer)(nil)

// New checks cfg and opens the file; Run writes to it.
func New(cfg Config) (*Writer, error) {
	if cfg.Path == "" {
		return nil, errors.New("flowlog: path is empty")
	}
	if cfg.SampleRate < 0 || cfg.SampleRate > 1 {
		return nil, fmt.Errorf("flowlog: sample rate %v is outside (0, 1]", cfg.SampleRate)
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.MaxFiles <= 0 {
		cfg.MaxFiles = DefaultMaxFiles
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	w := &Writer{
		cfg:    cfg,
		log:    logger.With("component", "flowlog"),
		queue:  make(chan flow.Record, cfg.QueueSize),
		reopen: make(chan struct{}, 1),
	}
	if cfg.SampleRate > 0 && cfg.SampleRate < 1 {
		w.sample = uint64(cfg.SampleRate * (1 << 63) * 2)
	}
	if err := w.open(); err != nil {
		return nil, err
	}
	return w, nil
}

// Flow implements flow.Sink: it samples r and queues it without blocking.
func (w *Writer) Flow(r flow.Record) {
	if w.sample != 0 && rand.Uint64() >= w.sample {
		w.sampledOut.Add(1)
		return
	}
	select {
	case w.queue <- r:
	default:
		w.queueFull.Add(1)
	}
}

// Reopen asks the writer to close and reopen its file (after an outside
// tool renamed it). It does not wait.
func (w *Writer) Reopen() {
	select {
	case w.reopen <- struct{}{}:
	default:
	}
}

// Stats are a Writer's counters.
type Stats struct {
	// Written counts lines written; QueueFull records dropped because the
	// queue was full; WriteErrors lines lost to a failed write;
	// SampledOut records left out by sampling; Rotations files rotated
	// (by size or Reopen).
	Written, QueueFull, WriteErrors, SampledOut, Rotations uint64
}

// Stats returns the writer's counters.
func (w *Writer) Stats() Stats {
	return Stats{Written: w.written.Load(), QueueFull: w.queueFull.Load(), WriteErrors: w.writeErrors.Load(),
		SampledOut: w.sampledOut.Load(), Rotations: w.rotations.Load()}
}

// Run writes queued records until ctx ends, then writes what is still
// queued, flushes and closes the file. Records that arrive later stay
// queued or are dropped; run the data path's shutdown before ending ctx.
func (w *Writer) Run(ctx context.Context) error {
	ran := false
	w.runOnce.Do(func() { ran = true })
	if !ran {
		return errors.New("flowlog: Run called twice")
	}
	defer w.close()
	for {
		select {
		case <-ctx.Done():
			for {
				select {
				case r := <-w.queue:
					w.write(&r)
				default:
					w.flush()
					return nil
				}
			}
		case <-w.reopen:
			w.rotate(false)
		case r := <-w.queue:
			w.write(&r)
			// Write what else is queued, then flush once.
			for n := len(w.queue); n > 0; n-- {
				r := <-w.queue
				w.write(&r)
			}
			w.flush()
		}
	}
}

func (w *Writer) open() error {
	if w.cfg.Path == Stdout {
		w.out = os.Stdout
	} else {
		f, err := os.OpenFile(w.cfg.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			return fmt.Errorf("flowlog: %w", err)
		}
		st, err := f.Stat()
		if err != nil {
			_ = f.Close()
			return fmt.Errorf("flowlog: %w", err)
		}
		w.file, w.out, w.size = f, f, st.Size()
	}
	if w.buf == nil {
		w.buf = bufio.NewWriterSize(w.out, 64<<10)
	} else {
		w.buf.Reset(w.out)
	}
	return nil
}

func (w *Writer) close() {
	w.flush()
	if w.file != nil {
		_ = w.file.Close()
		w.file = nil
	}
}

// flush writes the buffer out. The buffer holds whole lines only (see
// write): they count as written when the flush succeeds, as write errors
// when it fails.
func (w *Writer) flush() {
	if w.pending == 0 {
		return
	}
	n := w.pending
	w.pending = 0
	if err := w.buf.Flush(); err != nil {
		w.writeErrors.Add(n)
		w.buf.Reset(w.out)
		if now := time.Now(); now.Sub(w.lastWarn) >= time.Minute {
			w.lastWarn = now
			w.log.Warn("flow log write failed; lines lost", "path", w.cfg.Path, "lines", n, "err", err)
		}
		return
	}
	w.written.Add(n)
}

// rotate closes the file and opens Path again: after a rename by an
// outside tool (bySize false), or after renaming it itself (bySize true).
func (w *Writer) rotate(bySize bool) {
	if w.cfg.Path == Stdout {
		return
	}
	w.flush()
	if w.file != nil {
		_ = w.file.Close()
		w.file = nil
	}
	if bySize {
		for i := w.cfg.MaxFiles - 1; i >= 1; i-- {
			_ = os.Rename(w.cfg.Path+"."+strconv.Itoa(i), w.cfg.Path+"."+strconv.Itoa(i+1))
		}
		if err := os.Rename(w.cfg.Path, w.cfg.Path+".1"); err != nil {
			w.log.Warn("flow log rotation", "path", w.cfg.Path, "err", err)
		}
	}
	if err := w.open(); err != nil {
		// Keep counting: lines written meanwhile go nowhere and are
		// counted as write errors until a later Reopen succeeds.
		w.out = failingWriter{err}
		w.buf.Reset(w.out)
		w.log.Warn("flow log reopen failed", "path", w.cfg.Path, "err", err)
		return
	}
	w.rotations.Add(1)
	w.log.Info("flow log rotated", "path", w.cfg.Path, "by_size", bySize)
}

type failingWriter struct{ err error }

func (f failingWriter) Write([]byte) (int, error) { return 0, f.err }

// write encodes one record into the buffer, flushing first when the line
// would not fit (so that the buffer only ever holds whole lines).
func (w *Writer) write(r *flow.Record) {
	w.line = w.appendLine(w.line[:0], r)
	if w.buf.Available() < len(w.line) {
		w.flush()
	}
	_, _ = w.buf.Write(w.line) // fits: never writes through; errors show at flush
	w.pending++
	w.size += int64(len(w.line))
	if w.cfg.MaxSize > 0 && w.size >= w.cfg.MaxSize {
		w.rotate(true)
	}
}

// appendLine appends r as one JSON line. The field names follow AWS
// Global Accelerator's flow logs where one exists.
func (w *Writer) appendLine(b []byte, r *flow.Record) []byte {
	b = append(b, `{"version":1,"pop":`...)
	b = appendString(b, w.cfg.PoP)
	b = append(b, `,"accelerator":`...)
	b = appendString(b, r.Accelerator)
	b = append(b, `,"listener":`...)
	b = appendString(b, r.Listener)
	b = append(b, `,"protocol":`...)
	b = appendString(b, r.Protocol)
	b = append(b, `,"ip_address_type":"`...)
	if r.Client.Addr().Is4() {
		b = append(b, "IPv4"...)
	} else {
		b = append(b, "IPv6"...)
	}
	b = append(b, '"')
	b = appendAddr(b, "client", r.Client)
	b = appendAddr(b, "accelerator", r.AcceleratorAddr)
	b = append(b, `,"endpoint_region":`...)
	b = appendString(b, r.Region)
	b = append(b, `,"endpoint_id":`...)
	b = appendString(b, r.Endpoint)
	host, port, ok := "", uint16(0), false
	if r.Endpoint != "" && w.cfg.Endpoint != nil {
		host, port, ok = w.cfg.Endpoint(r.Region, r.Endpoint, r.AcceleratorAddr.Port())
	}
	b = append(b, `,"endpoint_ip":`...)
	b = appendString(b, host)
	b = append(b, `,"endpoint_port":`...)
	if !ok {
		port = 0
	}
	b = strconv.AppendUint(b, uint64(port), 10)
	b = append(b, `,"packets_in":`...)
	b = strconv.AppendUint(b, r.PacketsIn, 10)
	b = append(b, `,"bytes_in":`...)
	b = strconv.AppendUint(b, r.BytesIn, 10)
	b = append(b, `,"packets_out":`...)
	b = strconv.AppendUint(b, r.PacketsOut, 10)
	b = append(b, `,"bytes_out":`...)
	b = strconv.AppendUint(b, r.BytesOut, 10)
	b = append(b, `,"start_time":"`...)
	b = r.Start.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","end_time":"`...)
	b = r.End.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","reason":"`...)
	b = append(b, r.Reason.String()...)
	b = append(b, "\"}\n"...)
	return b
}

// appendAddr appends `"<key>_ip":"addr","<key>_port":port`.
func appendAddr(b []byte, key string, ap netip.AddrPort) []byte {
	b = append(b, `,"`...)
	b = append(b, key...)
	b = append(b, `_ip":"`...)
	if ap.Addr().IsValid() {
		b = ap.Addr().Unmap().AppendTo(b)
	}
	b = append(b, `","`...)
	b = append(b, key...)
	b = append(b, `_port":`...)
	return strconv.AppendUint(b, uint64(ap.Port()), 10)
}

// appendString appends s as a JSON string.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}
