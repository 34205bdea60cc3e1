package dashboard_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/control/admin"
	"github.com/anyedge/anyedge/control/config"
	"github.com/anyedge/anyedge/control/dashboard"

	"github.com/anyedge/anyedge/internal/needs"
)

// chromiumPath is Debian's chromium, which .ci/run installs.
const chromiumPath = "/usr/bin/chromium"

// pageLatency bounds how long after its region noticed an unhealthy
// endpoint the page shows it. The issue asks for 2 s, and the dashboard
// polls every node each second (DefaultInterval) and pushes what changed
// to the page at once, so the figure is about one second (logged as
// MEASURE; 0.76 s in a loaded -race run). The test's bound is five times
// the target: a chromium under the race detector on a busy 2-core machine
// can stall for seconds, and the bound is there to catch a page that
// stopped following, not to time this machine.
const pageLatency = 10 * time.Second

// browser starts a headless chromium with a fresh profile for the test and
// returns a tab of it, sized as a 1366×768 laptop screen.
func browser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		needs.Skipf(t, "%s not installed (.ci/run installs Debian's chromium): %v", chromiumPath, err)
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1366, 768),
	)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	// The first Run starts the browser; it must not carry a timeout.
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate("about:blank")))
	return ctx
}

// eval evaluates a JavaScript expression that returns a string.
func eval(t *testing.T, ctx context.Context, js string) string {
	t.Helper()
	// Generous: chromium under the race detector on a busy 2-core machine
	// can take seconds for one evaluation.
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	s, err := chromedp.Run(cctx, chromedp.Evaluate[string](js))
	require.NoError(t, err, js)
	return s
}

// waitPage polls the page until the expression returns want, and returns
// when it first did.
func waitPage(t *testing.T, ctx context.Context, js, want string, within time.Duration) time.Time {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(within)
	last := ""
	for {
		if last = eval(t, ctx, js); last == want {
			return time.Now()
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("page: %s is %q, not %q, after %s", js, last, want, within)
		}
	}
}

// attr is a JavaScript expression for attribute name of the first element
// matching selector, or "" if there is none.
func attr(selector, name string) string {
	return fmt.Sprintf(`document.querySelector(%q)?.getAttribute(%q) ?? ""`, selector, name)
}

// screenshot saves the tab's screen as PNG to the path in
// ANYEDGE_DASHBOARD_PNG, or to the test's temporary directory.
func screenshot(t *testing.T, ctx context.Context, name string) string {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	require.NoError(t, err)
	path := os.Getenv("ANYEDGE_DASHBOARD_PNG")
	if path == "" {
		path = filepath.Join(t.TempDir(), name)
	}
	require.NoError(t, os.WriteFile(path, png, 0o644))
	t.Logf("screenshot: %s", path)
	return path
}

// endpointChange returns when region's status says endpoint id last
// turned to state. It reads the region's /status as the dashboard relays
// it verbatim to the page.
func endpointChange(t *testing.T, ctx context.Context, region, id, state string) time.Time {
	t.Helper()
	at := eval(t, ctx, fmt.Sprintf(`view.nodes.find((n) => n.name === %q).status.endpoints.find((e) => e.id === %q)`+
		`.changes.findLast((c) => c.to === %q)?.at ?? ""`, region, id, state))
	ts, err := time.Parse(time.RFC3339Nano, at)
	require.NoError(t, err, "region %s has no change of %s to %s", region, id, state)
	return ts
}

// TestDashboardInBrowser runs one edge and two regions in process, opens
// the fleet page in headless chromium, asks the edge's DNS server and
// checks that the DNS panel counts the queries, makes a custom routing
// destination fail and checks that it shows as down, as does one whose
// probe fails, kills an endpoint
// and checks that the page shows it unhealthy soon after its region
// noticed (the latency is logged: target 2 s), then kills a region and checks that the matrix shows it
// unreachable.
func TestDashboardInBrowser(t *testing.T) {
	ctx := browser(t)
	l := newLab(t, labSpec{pops: 1, regions: 2, endpointsPer: 2, dns: true, custom: true, probed: true})
	l.start(t)
	url := l.serveDashboard(t, dashboard.Options{Title: "browser test"})
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(url)))

	victim := `[data-endpoint="web-1a"]`
	waitPage(t, ctx, attr(victim, "data-state"), "healthy", 15*time.Second)
	waitPage(t, ctx, attr(`td[data-pop="pop-1"][data-region="r2"]`, "data-reachable"), "true", 15*time.Second)
	require.NoError(t, l.traffic("pop-1", 5))

	// DNS: one answer and one NXDOMAIN from a real client; the panel
	// counts both, by type and by answer, and names the PoP that the
	// steered accelerator's answers carry.
	r, err := l.ask("pop-1", "web.accel.example.net", dns.TypeA)
	require.NoError(t, err)
	require.Len(t, r.Answer, 1)
	require.Equal(t, l.popIP("pop-1"), r.Answer[0].(*dns.A).A.String())
	r, err = l.ask("pop-1", "nope.accel.example.net", dns.TypeA)
	require.NoError(t, err)
	require.Equal(t, dns.RcodeNameError, r.Rcode)
	dnsRow := `#dns [data-pop="pop-1"]`
	waitPage(t, ctx, attr(dnsRow, "data-dns-queries"), "2", 15*time.Second)
	chip := func(key string) string {
		return eval(t, ctx, fmt.Sprintf(`[...document.querySelectorAll(%q)].map((e) => e.textContent).join(",")`, dnsRow+` [data-key="`+key+`"]`))
	}
	require.Equal(t, "A 2", chip("A"))
	require.Equal(t, "NOERROR 1", chip("NOERROR"))
	require.Equal(t, "NXDOMAIN 1", chip("NXDOMAIN"))
	waitPage(t, ctx, attr(`#dns .steer[data-accelerator="web"]`, "data-available"), "pop-1", 15*time.Second)

	// Custom routing: a destination that is allowed but serves nothing
	// fails its first dial and is then refused at once; the panel shows
	// it down. A run-time allow shows in the region's count.
	require.NoError(t, l.gameFlow("pop-1", gameAllowed))
	down := fmt.Sprintf(`#custom [data-region="r1"] [data-destination="%s:%d"]`, gameAllowed, l.gamePort)
	waitPage(t, ctx, attr(down, "data-subnet"), "game-a", 15*time.Second)
	require.Contains(t, eval(t, ctx, fmt.Sprintf(`document.querySelector(%q).textContent`, down)), "refused")
	// A destination allowed one by one is probed: its probe marks it down
	// without any flow, and the panel says so, with the probe's reason.
	probed := fmt.Sprintf(`#custom [data-region="r1"] [data-destination="%s:%d"]`, gameProbed, l.gamePort)
	waitPage(t, ctx, attr(probed, "data-subnet"), "game-a", 15*time.Second)
	why := eval(t, ctx, fmt.Sprintf(`document.querySelector(%q).textContent`, probed))
	require.Contains(t, why, "probe failing")
	require.Contains(t, why, "refused")
	require.Equal(t, "1", eval(t, ctx, attr(`#custom [data-region="r1"]`, "data-probed")))
	c := admin.NewClient(l.doc.Topology.Regions[0].Admin, nil)
	t.Cleanup(c.Close)
	_, err = c.Post(t.Context(), "/custom-routing/allow", json.RawMessage(`{"subnet":"game-a","addresses":["127.66.0.5"]}`))
	require.NoError(t, err)
	waitPage(t, ctx, attr(`#custom [data-region="r1"] [data-allows]`, "data-allows"), "1", 15*time.Second)

	// A region without DNS or custom routing shows neither panel on its
	// own page.
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate("http://"+l.doc.Topology.Regions[1].Admin+"/dashboard/")))
	waitPage(t, ctx, attr(`[data-endpoint="web-2a"]`, "data-state"), "healthy", 15*time.Second)
	for _, panel := range []string{"dns-panel", "custom-panel", "side"} {
		require.Equal(t, "none", eval(t, ctx, fmt.Sprintf(`getComputedStyle(document.getElementById(%q)).display`, panel)), panel)
	}
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(url)))
	waitPage(t, ctx, attr(victim, "data-state"), "healthy", 15*time.Second)

	// An endpoint dies: its region notices on the next probe, and the page
	// follows (see pageLatency).
	l.endpoints["web-1a"].kill()
	seen := waitPage(t, ctx, attr(victim, "data-state"), "unhealthy", 15*time.Second)
	noticed := endpointChange(t, ctx, "r1", "web-1a", "unhealthy")
	latency := seen.Sub(noticed)
	t.Logf("MEASURE region r1 noticed at %s, the page showed it %s later (target 2 s)", noticed.Format("15:04:05.000"), latency)
	require.GreaterOrEqual(t, latency, time.Duration(0), "the page cannot know before the region")
	require.Less(t, latency, pageLatency, "the page showed the unhealthy endpoint too late")
	require.Contains(t, eval(t, ctx, `document.querySelector('[data-endpoint="web-1a"] .reason').textContent`), "refused")
	require.Equal(t, "healthy", eval(t, ctx, attr(`[data-endpoint="web-1b"]`, "data-state")), "the other endpoint is untouched")

	// Every node runs one revision; a reload that pop-1 finds invalid
	// is listed with its error, and the revision stays.
	require.Equal(t, "config "+string(l.rev), eval(t, ctx, `document.getElementById("revisions").textContent`))
	_, perr := config.Parse([]byte("topology: {pops: 1}\n"), config.LoadOptions{Env: []string{}})
	require.Error(t, perr)
	select {
	case l.updates["pop-1"] <- config.Update{Err: perr, Trigger: "sighup"}:
	case <-time.After(10 * time.Second):
		t.Fatal("pop-1 takes no update")
	}
	waitPage(t, ctx, attr(`#problems [data-node="pop-1"][data-reload]`, "data-reload"), "invalid", 15*time.Second)
	require.Contains(t, eval(t, ctx, `document.querySelector('#problems [data-node="pop-1"][data-reload]').textContent`), "at least one accelerator is required")
	require.Equal(t, "1", eval(t, ctx, attr("#revisions", "data-revisions")))

	// An override on pop-1 (anyedge ctl dial): marked beside the revision
	// and listed with the node.
	pop1, err := l.doc.Node("pop-1")
	require.NoError(t, err)
	ac := admin.NewClient(pop1.PoP.Admin, nil)
	defer ac.Close()
	dial := 50
	_, err = ac.Post(ctx, "/overrides", admin.OverrideRequest{Kind: admin.OverrideDial, Name: "r2", Value: &dial})
	require.NoError(t, err)
	waitPage(t, ctx, attr(`#problems [data-node="pop-1"][data-overrides]`, "data-overrides"), "1", 15*time.Second)
	require.Contains(t, eval(t, ctx, `document.querySelector('#problems [data-node="pop-1"][data-overrides]').textContent`), "dial r2 50")
	require.Equal(t, "pop-1", eval(t, ctx, attr("#overrides", "data-nodes")))

	// The nodes' config source (etcd) is out of reach: listed per node.
	l.source.Store(&config.SourceStatus{Connected: false, Since: time.Now(), Errors: 3, Disconnects: 1,
		LastError: "probe: context deadline exceeded"})
	waitPage(t, ctx, attr(`#problems [data-node="pop-1"][data-source]`, "data-source"), "lost", 15*time.Second)
	require.Contains(t, eval(t, ctx, `document.querySelector('#problems [data-node="pop-1"][data-source]').textContent`),
		"cannot reach its config source")

	// A region dies: the edge loses its backbone, the dashboard its admin
	// API; the matrix and the problem list say so, the rest stays live.
	l.stop("r2")
	waitPage(t, ctx, attr(`td[data-pop="pop-1"][data-region="r2"]`, "data-reachable"), "false", 15*time.Second)
	waitPage(t, ctx, attr(`#problems [data-node="r2"]`, "data-ok"), "false", 15*time.Second)
	require.Contains(t, eval(t, ctx, `document.querySelector('#problems [data-node="r2"]').textContent`), "connection refused")
	require.Equal(t, "true", eval(t, ctx, attr(`td[data-pop="pop-1"][data-region="r1"]`, "data-reachable")))
	require.Equal(t, "live", eval(t, ctx, `document.getElementById("live").textContent`))
	screenshot(t, ctx, "dashboard-browser-test.png")

	// Every node serves the same page for itself on its admin address.
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate("http://"+l.doc.Topology.Regions[0].Admin+"/")))
	waitPage(t, ctx, `location.pathname`, admin.PagePath, 5*time.Second)
	waitPage(t, ctx, attr(victim, "data-state"), "unhealthy", 15*time.Second)
	require.Equal(t, "r1 (region)", eval(t, ctx, `document.getElementById("title").textContent`))
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate("http://"+l.doc.Topology.PoPs[0].Admin+"/dashboard/")))
	waitPage(t, ctx, attr(`td[data-pop="pop-1"][data-region="r2"]`, "data-reachable"), "false", 15*time.Second)
	require.Equal(t, "", eval(t, ctx, attr(victim, "data-state")), "an edge's own page has no endpoints")
	require.Contains(t, eval(t, ctx, `document.querySelector('#custom [data-region="r1"]').textContent`), "via pop-1",
		"an edge's own page shows the custom routing state its regions pushed")
	require.Equal(t, "2", eval(t, ctx, attr(dnsRow, "data-dns-queries")))
}

// TestDashboardScreenshot shows the intended layout: three PoPs and three
// regions with traffic and one endpoint that dies, DNS queries to every
// PoP, and a custom routing destination that is down, in a laptop browser's
// viewport (1366×768 less the browser's own bars). It checks that nothing
// needs scrolling and saves a screenshot; README's docs/dashboard.png is
// made with
//
//	ANYEDGE_DASHBOARD_PNG=$PWD/docs/dashboard.png go test -run TestDashboardScreenshot ./control/dashboard/
//
// To fill the graphs in seconds rather than minutes, this dashboard samples
// every 100 ms over 10 s instead of every second over 3 minutes.
func TestDashboardScreenshot(t *testing.T) {
	ctx := browser(t)
	const viewportHeight = 768 - 110
	require.NoError(t, chromedp.Do(ctx, chromedp.EmulateViewport(1366, viewportHeight)))
	l := newLab(t, labSpec{pops: 3, regions: 3, endpointsPer: 2, dns: true, custom: true})
	l.start(t)
	url := l.serveDashboard(t, dashboard.Options{Title: "example fleet", Interval: 100 * time.Millisecond, History: 10 * time.Second})
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(url)))
	for _, p := range l.pops {
		waitPage(t, ctx, attr(fmt.Sprintf(`[data-pop=%q][data-ready]`, p), "data-ready"), "true", 15*time.Second)
	}
	c := admin.NewClient(l.doc.Topology.Regions[0].Admin, nil)
	t.Cleanup(c.Close)
	_, err := c.Post(t.Context(), "/custom-routing/allow", json.RawMessage(`{"subnet":"game-a","addresses":["127.66.0.5"]}`))
	require.NoError(t, err)
	// Traffic all along, more through each next PoP, and an endpoint that
	// dies on the way.
	rounds, stopLoad := l.startLoad()
	t.Cleanup(func() { _ = stopLoad() })
	dead := attr(`[data-endpoint="web-2b"]`, "data-state")
	for round := range rounds {
		if round == 10 {
			l.endpoints["web-2b"].kill()
		}
		require.Less(t, round, 200, "web-2b never showed as unhealthy")
		if round >= 30 && eval(t, ctx, dead) == "unhealthy" {
			break
		}
	}

	bottom := eval(t, ctx, `String(Math.ceil(document.querySelector("main").getBoundingClientRect().bottom))`)
	var px int
	_, err = fmt.Sscan(bottom, &px)
	require.NoError(t, err)
	t.Logf("the page ends at %d px of %d", px, viewportHeight)
	screenshot(t, ctx, "dashboard.png") // first: it shows what does not fit
	require.LessOrEqual(t, px, viewportHeight, "3 PoPs × 3 regions must fit a laptop screen without scrolling")
	require.NoError(t, stopLoad())
}
