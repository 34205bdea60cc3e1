// Package router decides where a new flow goes: which region's endpoint
// group, and which endpoint in it. It is pure logic over an immutable [Table]
// compiled once per listener configuration and a [View] of the world (backbone
// RTT and reachability per region, endpoint health) supplied by the edge.
//
// # Group choice
//
// For every new flow the listener's groups are ordered by static preference
// (groups with a non-zero Preference first, lower first), then by measured
// backbone RTT to the group's region (the View's; the backbone reports a
// windowed minimum with hysteresis, so that noise does not reorder
// regions), then by region name so that ties
// resolve the same way everywhere. Walking that order, a group is a
// candidate when its region is reachable, its traffic dial is above zero and
// it has at least one healthy endpoint with a weight above zero. A candidate
// group admits the flow when a hash of the flow, salted per region, falls in
// the lowest TrafficDial percent of the hash space; otherwise the flow falls
// through to the next group. The admission test depends only on the flow and
// the region name, so every edge refuses and admits the same flows, and a
// client with source-IP affinity is treated the same way on every listener.
//
// Flows that every candidate's dial refused go to the first (nearest)
// candidate. A group with TrafficDial 0 receives no new flows at all, and it
// does not count as healthy capacity: if it is the only group with healthy
// endpoints, the router fails open (below) among the groups with a dial.
// When no group has a dial above zero, or no region is reachable, Pick returns
// [ErrNoRoute].
//
// # Endpoint choice
//
// Within the chosen group the endpoint is picked by weighted rendezvous
// hashing (highest random weight): every eligible endpoint gets the score
// weight / -ln(u), where u in (0, 1) is a hash of the flow key and the
// endpoint ID, and the highest score wins. The probability of winning is
// exactly weight / sum(weights). Rendezvous hashing is used because
//
//   - every edge with the same configuration and health view computes the
//     same answer for the same flow without talking to any other edge, so a
//     client that anycast moves to another PoP, or a UDP flow seen by two
//     edges, lands on the same endpoint;
//   - removing (ejecting, draining) one of N endpoints moves only the flows
//     that were on it, about 1/N of them, and adding it back moves about 1/N
//     of the flows back; no other flow changes endpoint;
//   - the next-best endpoint for a flow is as deterministic as the best, which
//     gives retries after a failed dial a stable second choice.
//
// Between endpoints of equal weight the comparison is done on the integer
// hashes alone, so the common equal-weight case is bit-for-bit identical on
// every machine and needs no logarithm. Between different weights the scores
// are compared as float64; math.Log may differ in the last bit between CPU
// architectures, which can only matter for two scores equal to within about
// 1e-16, a negligible fraction of flows.
//
// The flow key is the 5-tuple (protocol, source address and port,
// destination address and port) for [AffinityNone] and the client address
// alone for [AffinitySourceIP]. IPv4 addresses and their IPv4-mapped IPv6
// forms hash the same. The hash is a fixed, seedless splitmix64-style mix of
// the key's 64-bit words, identical across processes and machines; the hash
// of each endpoint ID and each region salt is computed once in [Compile], so
// a flow costs one mix per endpoint considered.
//
// # Health and fail-open
//
// Endpoints the View reports unhealthy are skipped (a View should report an
// endpoint whose health is not yet known as healthy). When no candidate group
// has a healthy endpoint, the router fails open: the same walk is done again
// treating every endpoint with a weight above zero as healthy, and the
// resulting [Choice] has FailOpen set so that status can show it. Unreachable
// regions are never chosen, healthy or not.
//
// # Retries
//
// Pick takes an optional [Exclude] function naming the regions and endpoints
// already tried for this flow. Excluded endpoints and regions are skipped
// exactly as unhealthy ones are, so successive Picks walk the flow's
// rendezvous order within a group and then the group order. If exclusion
// leaves no healthy endpoint, Pick fails open to the unhealthy endpoints not
// yet excluded (FailOpen set) before it gives up with [ErrNoRoute].
package router
