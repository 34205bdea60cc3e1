// Package healthcheck provides the health state of a region's endpoints:
// active probes on an interval (see the probe subpackage), passive ejection
// when a dial to an endpoint fails, and a stream of state changes that the
// backbone pushes to edges.
//
// # States and transitions
//
// Every endpoint is in one of three states:
//
//   - Unknown: no probe has finished yet (a new endpoint, or one whose probe
//     configuration changed). Routers treat Unknown like Healthy, so that a
//     freshly started region takes traffic at once; see State.Routable.
//   - Healthy: the endpoint passes its probes.
//   - Unhealthy: the endpoint failed enough probes, or was ejected.
//
// The transitions are:
//
//   - Unknown → Healthy or Unhealthy on the first probe result, so that
//     start-up does not wait for a threshold's worth of intervals.
//   - Healthy → Unhealthy after UnhealthyThreshold consecutive failed probes,
//     or at once when Checker.Eject reports a failed dial (passive ejection).
//   - Unhealthy → Healthy after HealthyThreshold consecutive passing probes.
//     A failed probe or another ejection restarts the count. An ejection also
//     makes the endpoint's next probe run at once rather than a full interval
//     later.
//
// # Timing
//
// Each target is probed by one goroutine. The first probe fires after a
// random offset within one interval, and every later one after the interval
// stretched or shrunk by a random fraction of up to Options.Jitter, so that
// probes of many endpoints do not fire in lockstep. The next interval starts
// when a probe finishes; probes of one target never overlap.
//
// # Publishing
//
// Checker.Snapshot returns every endpoint's Status, and Checker.History an
// endpoint's last HistoryLen state changes (time, from, to, reason), kept in
// a small ring per endpoint. Checker.Subscribe returns
// a Subscription that is signalled on every change and hands out the latest
// Status of each changed endpoint; a subscriber that reads slowly misses
// intermediate states but never blocks probing and always sees the last one.
package healthcheck
