package flowlog_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/anyedge/anyedge/control/flowlog"
	"github.com/anyedge/anyedge/edge/flow"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// line is what a flow-log line holds.
type line struct {
	Version         int    `json:"version"`
	PoP             string `json:"pop"`
	Accelerator     string `json:"accelerator"`
	Listener        string `json:"listener"`
	Protocol        string `json:"protocol"`
	IPAddressType   string `json:"ip_address_type"`
	ClientIP        string `json:"client_ip"`
	ClientPort      int    `json:"client_port"`
	AcceleratorIP   string `json:"accelerator_ip"`
	AcceleratorPort int    `json:"accelerator_port"`
	EndpointRegion  string `json:"endpoint_region"`
	EndpointID      string `json:"endpoint_id"`
	EndpointIP      string `json:"endpoint_ip"`
	EndpointPort    int    `json:"endpoint_port"`
	PacketsIn       uint64 `json:"packets_in"`
	BytesIn         uint64 `json:"bytes_in"`
	PacketsOut      uint64 `json:"packets_out"`
	BytesOut        uint64 `json:"bytes_out"`
	StartTime       string `json:"start_time"`
	EndTime         string `json:"end_time"`
	Reason          string `json:"reason"`
}

// readLines decodes every line of the files, strictly.
func readLines(t *testing.T, paths ...string) []line {
	t.Helper()
	var out []line
	for _, p := range paths {
		f, err := os.Open(p)
		if os.IsNotExist(err) {
			continue
		}
		require.NoError(t, err)
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var l line
			dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
			dec.DisallowUnknownFields()
			require.NoError(t, dec.Decode(&l), "%s: %s", p, sc.Text())
			out = append(out, l)
		}
		require.NoError(t, sc.Err())
		_ = f.Close()
	}
	return out
}

// run starts w.Run and returns a function that stops it and waits.
func run(t *testing.T, w *flowlog.Writer) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			require.NoError(t, <-done)
		})
	}
	t.Cleanup(stop)
	return stop
}

func record(i int, reason flow.Reason) flow.Record {
	start := time.Date(2026, 11, 26, 15, 7, 0, 0, time.UTC)
	return flow.Record{
		Listener: "web/tcp/443", Accelerator: "web", Protocol: "tcp",
		Client:          netip.AddrPortFrom(netip.MustParseAddr("198.18.0.7"), uint16(1000+i)),
		AcceleratorAddr: netip.MustParseAddrPort("203.0.113.10:443"),
		Region:          "eu", Endpoint: "web-1",
		BytesIn: 100, BytesOut: 2000, PacketsIn: 3, PacketsOut: 4,
		Start: start, End: start.Add(1500 * time.Millisecond), Reason: reason,
	}
}

func endpoint(region, id string, port uint16) (string, uint16, bool) {
	if region == "eu" && id == "web-1" {
		return "198.18.1.1", port + 8000, true
	}
	return "", 0, false
}

// TestEveryReason: one line per record, for every close and refusal
// reason, with GA's fields.
func TestEveryReason(t *testing.T) {
	path := filepath.Join(t.TempDir(), "flows.log")
	w, err := flowlog.New(flowlog.Config{Path: path, PoP: "pop-1", Endpoint: endpoint})
	require.NoError(t, err)
	stop := run(t, w)
	for i, r := range flow.Reasons {
		w.Flow(record(i, r))
	}
	refused := record(99, flow.TableFull)
	refused.Region, refused.Endpoint = "", ""
	refused.Client = netip.MustParseAddrPort("[2001:db8::7]:5353")
	w.Flow(refused)
	stop()
	lines := readLines(t, path)
	require.Len(t, lines, len(flow.Reasons)+1)
	for i, r := range flow.Reasons {
		l := lines[i]
		require.Equal(t, r.String(), l.Reason)
		require.Equal(t, line{
			Version: 1, PoP: "pop-1", Accelerator: "web", Listener: "web/tcp/443", Protocol: "tcp", IPAddressType: "IPv4",
			ClientIP: "198.18.0.7", ClientPort: 1000 + i, AcceleratorIP: "203.0.113.10", AcceleratorPort: 443,
			EndpointRegion: "eu", EndpointID: "web-1", EndpointIP: "198.18.1.1", EndpointPort: 8443,
			PacketsIn: 3, BytesIn: 100, PacketsOut: 4, BytesOut: 2000,
			StartTime: "2026-11-26T15:07:00Z", EndTime: "2026-11-26T15:07:01.5Z", Reason: r.String(),
		}, l)
	}
	last := lines[len(lines)-1]
	require.Equal(t, "IPv6", last.IPAddressType)
	require.Equal(t, "2001:db8::7", last.ClientIP)
	require.Empty(t, last.EndpointID)
	require.Zero(t, last.EndpointPort)
	require.Equal(t, uint64(len(flow.Reasons)+1), w.Stats().Written)
}

// TestRotateRename: an outside tool renames the file and asks for a
// reopen while records keep coming; every record is in one of the two
// files, exactly once.
func TestRotateRename(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "flows.log")
	w, err := flowlog.New(flowlog.Config{Path: path, QueueSize: 1 << 16})
	require.NoError(t, err)
	stop := run(t, w)
	const n = 20000
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range n {
			w.Flow(record(i, flow.ClientFIN))
		}
	})
	// Rename once the file has something in it, then reopen.
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(10 * time.Second)
	for w.Stats().Written == 0 {
		require.True(t, time.Now().Before(deadline), "nothing written")
		<-tick.C
	}
	w.Flow(record(n, flow.ClientFIN))
	require.NoError(t, os.Rename(path, path+".old"))
	w.Reopen()
	wg.Wait()
	for w.Stats().Rotations == 0 {
		require.True(t, time.Now().Before(deadline), "no reopen")
		<-tick.C
	}
	stop()
	st := w.Stats()
	require.Zero(t, st.QueueFull)
	require.Zero(t, st.WriteErrors)
	lines := readLines(t, path+".old", path)
	require.Equal(t, int(st.Written), len(lines))
	seen := map[int]int{}
	for _, l := range lines {
		seen[l.ClientPort-1000]++
	}
	for i := range n + 1 {
		require.Equal(t, 1, seen[i], "record %d", i)
	}
	require.EqualValues(t, 1, st.Rotations)
	_, err = os.Stat(path)
	require.NoError(t, err, "the reopen made a new file")
}

// TestRotateSize: size rotation keeps MaxFiles old files and loses no
// line while they are within reach.
func TestRotateSize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "flows.log")
	w, err := flowlog.New(flowlog.Config{Path: path, MaxSize: 16 << 10, MaxFiles: 50, QueueSize: 4096})
	require.NoError(t, err)
	stop := run(t, w)
	const n = 1000
	for i := range n {
		w.Flow(record(i, flow.EndpointFIN))
	}
	stop()
	st := w.Stats()
	require.Positive(t, st.Rotations)
	files := []string{path}
	for i := 1; i <= 50; i++ {
		files = append(files, path+"."+strconv.Itoa(i))
	}
	require.Len(t, readLines(t, files...), n)
	fi, err := os.Stat(path + ".1")
	require.NoError(t, err)
	require.Less(t, fi.Size(), int64(17<<10), "a rotated file holds about MaxSize")
}

// TestOverload: with the writer stalled (not running), Flow never blocks:
// what does not fit the queue is dropped and counted, and every record is
// either written or counted as dropped.
func TestOverload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "flows.log")
	w, err := flowlog.New(flowlog.Config{Path: path, QueueSize: 8})
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 1000 {
			w.Flow(record(i, flow.IdleTimeout))
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Flow blocked on a stalled writer")
	}
	require.EqualValues(t, 992, w.Stats().QueueFull)
	stop := run(t, w)
	stop()
	st := w.Stats()
	require.EqualValues(t, 8, st.Written)
	require.Len(t, readLines(t, path), 8)
}

// TestWriteErrors: a device that is full loses lines; they are counted,
// and the writer keeps going.
func TestWriteErrors(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full")
	}
	w, err := flowlog.New(flowlog.Config{Path: "/dev/full"})
	require.NoError(t, err)
	stop := run(t, w)
	for i := range 100 {
		w.Flow(record(i, flow.ClientReset))
	}
	stop()
	st := w.Stats()
	require.Zero(t, st.Written)
	require.EqualValues(t, 100, st.WriteErrors)
}

// TestSampling: about SampleRate of the records are written; the rest are
// counted as sampled out.
func TestSampling(t *testing.T) {
	path := filepath.Join(t.TempDir(), "flows.log")
	w, err := flowlog.New(flowlog.Config{Path: path, SampleRate: 0.25, QueueSize: 1 << 14})
	require.NoError(t, err)
	stop := run(t, w)
	const n = 10000
	for i := range n {
		w.Flow(record(i, flow.ClientFIN))
	}
	stop()
	st := w.Stats()
	require.EqualValues(t, n, st.Written+st.SampledOut)
	require.InDelta(t, n/4, float64(st.Written), n/20)
}

func TestConfigErrors(t *testing.T) {
	_, err := flowlog.New(flowlog.Config{})
	require.ErrorContains(t, err, "path is empty")
	_, err = flowlog.New(flowlog.Config{Path: "-", SampleRate: 1.5})
	require.ErrorContains(t, err, "sample rate")
	_, err = flowlog.New(flowlog.Config{Path: filepath.Join(t.TempDir(), "no", "such", "dir", "f.log")})
	require.ErrorContains(t, err, "no such file")
}

// BenchmarkFlow is what the data path pays per finished flow with flow
// logs on: sampling and a non-blocking queue send (the writer drains and
// writes to a file meanwhile, as in production).
func BenchmarkFlow(b *testing.B) {
	w, err := flowlog.New(flowlog.Config{Path: filepath.Join(b.TempDir(), "flows.log"), QueueSize: 1 << 16})
	require.NoError(b, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	r := record(1, flow.ClientFIN)
	for b.Loop() {
		w.Flow(r)
	}
	cancel()
	require.NoError(b, <-done)
	st := w.Stats()
	b.ReportMetric(float64(st.QueueFull)/float64(st.QueueFull+st.Written), "dropped/op")
}
