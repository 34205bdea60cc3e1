// Package config is the YAML document that describes a whole anyedge fleet:
// accelerators, listeners, endpoint groups, endpoints and the topology (PoPs
// and regions). Every node loads the same document and picks its own part by
// name. Parse is the one way in: it checks the YAML text strictly against
// the schema (the mapstructure tags of this file; keys exact, each once),
// decodes it with viper, applies the defaults (WithDefaults) and validates
// (Validate, which calls each component's own rules), reporting every
// problem at once with its document path, line and column.
package config

import "time"

// Document is the root of the configuration file.
type Document struct {
	// Accelerators are the services the fleet offers, each on its own static
	// anycast addresses.
	Accelerators []Accelerator `mapstructure:"accelerators"`
	// Topology names the PoPs (edges) and regions of the fleet.
	Topology Topology `mapstructure:"topology"`
	// DNS, when present, makes every edge an authoritative server for a
	// zone that names each accelerator, and enables DNS steering.
	DNS *DNS `mapstructure:"dns"`
}

// Accelerator is one service reachable on a fixed set of anycast addresses.
type Accelerator struct {
	// Name identifies the accelerator in logs, status and metrics.
	Name string `mapstructure:"name"`
	// IPAddresses are the static anycast addresses (IPv4 and IPv6) that the
	// edges listen on and announce.
	IPAddresses []string `mapstructure:"ip_addresses"`
	// Prefixes are the anycast prefixes announced over BGP; each must cover at
	// least one of IPAddresses. Empty means one host route per address.
	Prefixes []string `mapstructure:"prefixes"`
	// Listeners accept client traffic on port ranges.
	Listeners []Listener `mapstructure:"listeners"`
	// Steering is how clients find an edge: "anycast" (the default: the
	// static addresses, announced over BGP) or "dns" (the accelerator's
	// name resolves to the unicast address of the nearest ready PoP; see
	// DNS.Steering). A "dns" accelerator has no ip_addresses or prefixes:
	// each edge listens on its own dns.steering.pops addresses.
	Steering string `mapstructure:"steering"`
	// DNSName is the accelerator's name relative to dns.zone (one or more
	// labels). Default: derived from Name (lower case, characters other
	// than letters, digits and '-' replaced by '-').
	DNSName string `mapstructure:"dns_name"`
	// Kind is "standard" (the default: listeners spread flows over
	// weighted, health-checked endpoints) or "custom_routing" (each
	// listener port reaches one destination address and port of a
	// subnet, by the port map of backbone/portmap; traffic is denied
	// until allowed).
	Kind string `mapstructure:"kind"`
	// Zones assign the accelerator's addresses to network zones: a PoP
	// with zones serves (listens on and announces) only the addresses of
	// its zones, so that one zone's failure leaves the other zones'
	// addresses reachable. An address in no zone is served by every PoP.
	Zones []Zone `mapstructure:"zones"`
}

// Zone is one network zone of an accelerator.
type Zone struct {
	// Name names the zone; PoPs list it in zones.
	Name string `mapstructure:"name"`
	// IPAddresses are addresses of the accelerator's ip_addresses.
	IPAddresses []string `mapstructure:"ip_addresses"`
}

// Listener accepts one protocol on one or more port ranges of the
// accelerator's addresses.
type Listener struct {
	// Protocol is "tcp" or "udp". Custom routing listeners have none:
	// they serve the protocols of their groups' destination_ports.
	Protocol string `mapstructure:"protocol"`
	// PortRanges are inclusive ranges of listening ports.
	PortRanges []PortRange `mapstructure:"port_ranges"`
	// ClientAffinity is "none" (hash of the 5-tuple) or "source_ip" (hash of
	// the client address). Default "none".
	ClientAffinity string `mapstructure:"client_affinity"`
	// IdleTimeout closes a flow without traffic for this long. Default 340s
	// for TCP, 30s for UDP (custom routing: each protocol its default
	// unless set).
	IdleTimeout time.Duration `mapstructure:"idle_timeout"`
	// EarlyData (tcp only) says which of a client's first bytes the edge
	// sends with a new flow's setup instead of after the region's answer:
	// "off", "tls" (a leading TLS ClientHello; the default) or "always".
	EarlyData string `mapstructure:"early_data"`
	// TLS (tcp only), when set, terminates TLS at the edge for this
	// listener (beyond AWS Global Accelerator, which never does): README,
	// "TLS at the edge".
	TLS *ListenerTLS `mapstructure:"tls"`
	// EndpointGroups are the per-region groups of endpoints that serve this
	// listener.
	EndpointGroups []EndpointGroup `mapstructure:"endpoint_groups"`
	// Allow and Deny are client prefixes (CIDR, or a bare address for one
	// host), IPv4 and IPv6: with an allow list only its clients may open
	// flows; a denied client never may (deny wins). AllowFile and DenyFile
	// name files with one prefix per line ('#' starts a comment), for long
	// lists; their prefixes add to the inline ones. Default: none.
	Allow     []string `mapstructure:"allow"`
	Deny      []string `mapstructure:"deny"`
	AllowFile string   `mapstructure:"allow_file"`
	DenyFile  string   `mapstructure:"deny_file"`
	// Limits bound the listener's new and concurrent flows.
	Limits ListenerLimits `mapstructure:"limits"`
}

// ListenerLimits bound one listener's flows on each edge. Zero is no
// limit; a refused flow is counted by reason (edge/admit).
type ListenerLimits struct {
	// MaxFlows caps the listener's concurrent flows (0: none).
	MaxFlows int `mapstructure:"max_flows"`
	// MaxFlowsPerSource caps one client address's concurrent flows on
	// the listener (0: none).
	MaxFlowsPerSource int `mapstructure:"max_flows_per_source"`
	// NewFlowsPerSecond is the new-flow rate one source prefix (IPv4 /24,
	// IPv6 /64) may sustain (0: none); NewFlowsBurst is how many it may
	// open at once (default: the rate rounded up).
	NewFlowsPerSecond float64 `mapstructure:"new_flows_per_second"`
	NewFlowsBurst     int     `mapstructure:"new_flows_burst"`
}

// ListenerTLS terminates TLS at the edge for one TCP listener.
type ListenerTLS struct {
	// Certificates are PEM certificate and key files, chosen per
	// connection by the client's SNI; the first also serves clients that
	// send none. At least one.
	Certificates []TLSCertificate `mapstructure:"certificates"`
	// ALPN lists the application protocols offered to clients, in order
	// of preference (e.g. [h2, http/1.1]); empty: none.
	ALPN []string `mapstructure:"alpn"`
	// HandshakeTimeout bounds a client's TLS handshake. Default 10s.
	HandshakeTimeout time.Duration `mapstructure:"handshake_timeout"`
	// Reencrypt, when set, has the regions speak TLS to the listener's
	// endpoints; otherwise they get the decrypted bytes.
	Reencrypt *Reencrypt `mapstructure:"reencrypt"`
}

// Reencrypt is TLS from the region to the endpoints of a listener that
// terminates TLS at the edge.
type Reencrypt struct {
	// CAFile is the PEM bundle the region verifies the endpoints'
	// certificates with (read by the regions).
	CAFile string `mapstructure:"ca_file"`
	// ServerName, when set, is the name the region sends (SNI) and
	// verifies; default the client's SNI, else the endpoint's host.
	ServerName string `mapstructure:"server_name"`
}

// TLSCertificate is one certificate of a listener that terminates TLS.
type TLSCertificate struct {
	// CertFile is the PEM certificate, the leaf first, then its chain.
	CertFile string `mapstructure:"cert_file"`
	// KeyFile is its PEM private key; it must not be readable by every
	// user.
	KeyFile string `mapstructure:"key_file"`
}

// PortRange is an inclusive range of ports; To defaults to From.
type PortRange struct {
	From int `mapstructure:"from"`
	To   int `mapstructure:"to"`
}

// EndpointGroup is the set of endpoints of one listener in one region.
type EndpointGroup struct {
	// Region names a region of the topology.
	Region string `mapstructure:"region"`
	// TrafficDial is the percentage (0–100) of new flows this group accepts;
	// the rest fall through to the next group. Default 100.
	TrafficDial *int `mapstructure:"traffic_dial"`
	// Preference, when non-zero, orders groups statically (lower first)
	// before measured backbone RTT is considered.
	Preference int `mapstructure:"preference"`
	// HealthCheck configures the active probes of this group's endpoints.
	HealthCheck HealthCheck `mapstructure:"health_check"`
	// PortOverrides map a listener port to the port dialled on endpoints.
	PortOverrides []PortOverride `mapstructure:"port_overrides"`
	// Endpoints are the targets of the group.
	Endpoints []Endpoint `mapstructure:"endpoints"`
	// DestinationPorts (custom routing) are the destination ports of every
	// address of the group's subnets, in the order the port map counts
	// them.
	DestinationPorts []DestinationPorts `mapstructure:"destination_ports"`
	// Subnets (custom routing) are the group's destination subnets.
	Subnets []Subnet `mapstructure:"subnets"`
}

// DestinationPorts is an inclusive range of destination ports of a custom
// routing group and the protocols served on them.
type DestinationPorts struct {
	// From and To bound the range; To defaults to From.
	From int `mapstructure:"from"`
	To   int `mapstructure:"to"`
	// Protocols are "tcp" and/or "udp" (default both).
	Protocols []string `mapstructure:"protocols"`
}

// Subnet is one destination subnet of a custom routing group: every
// address and destination port of it gets one listener port, from
// ListenerPortBase on (backbone/portmap documents the mapping).
type Subnet struct {
	// ID names the subnet fleet-wide (endpoint IDs and subnet IDs share
	// one namespace): anyedge ctl allow and the port map use it.
	ID string `mapstructure:"id"`
	// CIDR is the IPv4 subnet, /17 to /28 (AWS Global Accelerator's
	// bounds; see AnyPrefixLength).
	CIDR string `mapstructure:"cidr"`
	// ListenerPortBase is the first listener port of the subnet's block,
	// which holds (addresses × destination ports) ports and must lie in
	// one of the listener's port ranges without overlapping another
	// subnet's block. The mapping of a subnet depends only on its CIDR,
	// this base and its group's destination_ports.
	ListenerPortBase int `mapstructure:"listener_port_base"`
	// AnyPrefixLength admits a prefix narrower than /28 (down to a single
	// address, /32). Nothing wider than /17 can fit: a /16 needs 65536
	// listener ports.
	AnyPrefixLength bool `mapstructure:"any_prefix_length"`
	// ClientIPPreservation sends a PROXY protocol v2 header carrying the
	// client address to the destination.
	ClientIPPreservation bool `mapstructure:"client_ip_preservation"`
	// AllowAllTraffic allows every destination of the subnet (AWS's
	// AllowAllTrafficToEndpoint). Traffic is denied by default.
	AllowAllTraffic bool `mapstructure:"allow_all_traffic"`
	// Allow allows chosen destinations.
	Allow []AllowRule `mapstructure:"allow"`
}

// AllowRule allows traffic to each of Addresses, on each of Ports (every
// destination port when Ports is empty).
type AllowRule struct {
	Addresses []string `mapstructure:"addresses"`
	Ports     []int    `mapstructure:"ports"`
}

// PortOverride maps one listener port to an endpoint port.
type PortOverride struct {
	ListenerPort int `mapstructure:"listener_port"`
	EndpointPort int `mapstructure:"endpoint_port"`
}

// HealthCheck configures the active probes of an endpoint group.
type HealthCheck struct {
	// Protocol is "tcp", "http", "https" or "dns". Default "tcp".
	Protocol string `mapstructure:"protocol"`
	// Port probed on each endpoint; 0 means the endpoint's traffic port.
	Port int `mapstructure:"port"`
	// Path requested by HTTP(S) probes. Default "/".
	Path string `mapstructure:"path"`
	// Host header of HTTP(S) probes; empty means the endpoint address.
	Host string `mapstructure:"host"`
	// StatusCodes is the accepted HTTP status range, e.g. "200-399" (default).
	StatusCodes string `mapstructure:"status_codes"`
	// InsecureSkipVerify turns off certificate verification for HTTPS probes.
	InsecureSkipVerify bool `mapstructure:"insecure_skip_verify"`
	// DNSName and DNSType are queried by DNS probes (default ".", "A");
	// DNSRcode is the expected answer code (default "NOERROR").
	DNSName  string `mapstructure:"dns_name"`
	DNSType  string `mapstructure:"dns_type"`
	DNSRcode string `mapstructure:"dns_rcode"`
	// Interval between probes (default 10s, minimum 1s).
	Interval time.Duration `mapstructure:"interval"`
	// Timeout of one probe (default 5s, at most Interval).
	Timeout time.Duration `mapstructure:"timeout"`
	// HealthyThreshold consecutive successes mark an endpoint healthy
	// (default 3).
	HealthyThreshold int `mapstructure:"healthy_threshold"`
	// UnhealthyThreshold consecutive failures mark it unhealthy (default 3).
	UnhealthyThreshold int `mapstructure:"unhealthy_threshold"`
}

// Endpoint is one target of an endpoint group.
type Endpoint struct {
	// ID names the endpoint across the fleet; edges refer to endpoints only
	// by ID.
	ID string `mapstructure:"id"`
	// Address is "host" or "host:port"; without a port the listener port
	// (after port_overrides) is dialled.
	Address string `mapstructure:"address"`
	// Weight (0–255) is the endpoint's share of new flows; 0 drains it.
	// Default 128.
	Weight *int `mapstructure:"weight"`
	// ClientIPPreservation sends a PROXY protocol v2 header carrying the
	// client address to the endpoint.
	ClientIPPreservation bool `mapstructure:"client_ip_preservation"`
}

// Topology describes the nodes of the fleet.
type Topology struct {
	// PKIDir holds the backbone CA (ca.crt) and node certificates
	// (NODE.crt, NODE.key). Default /etc/anyedge/pki.
	PKIDir string `mapstructure:"pki_dir"`
	// PoPs are the edge nodes.
	PoPs []PoP `mapstructure:"pops"`
	// Regions are the gateway nodes next to endpoints.
	Regions []Region `mapstructure:"regions"`
}

// PoP is one edge node.
type PoP struct {
	// Name identifies the node (--node) and is the name in its certificate.
	Name string `mapstructure:"name"`
	// Admin is the localhost address of the status and admin API
	// (default 127.0.0.1:9180).
	Admin string `mapstructure:"admin"`
	// RemoteAdmin, when set, is a host:port where the admin API is also
	// served to operators on other machines, with mutual TLS: operator
	// certificates of the fleet's CA only. Empty (default) means none.
	RemoteAdmin string `mapstructure:"remote_admin"`
	// Backbone tunes the QUIC client pool towards regions.
	Backbone BackboneClient `mapstructure:"backbone"`
	// UDP limits the UDP flow table.
	UDP UDPLimits `mapstructure:"udp"`
	// Limits bound the edge process as a whole.
	Limits PoPLimits `mapstructure:"limits"`
	// BGP configures the anycast announcements; empty means no BGP.
	BGP BGP `mapstructure:"bgp"`
	// Drain configures graceful shutdown.
	Drain Drain `mapstructure:"drain"`
	// DNSListen, when set, replaces dns.listen on this PoP: the addresses
	// (host:port, UDP and TCP) its DNS server binds.
	DNSListen []string `mapstructure:"dns_listen"`
	// FlowLogs writes one JSON line per finished flow.
	FlowLogs FlowLogs `mapstructure:"flow_logs"`
	// Zones are the network zones the PoP serves; empty means all.
	Zones []string `mapstructure:"zones"`
}

// PoPLimits bound an edge process across its listeners.
type PoPLimits struct {
	// MaxConnections caps the TCP connections the edge holds at once,
	// every listener together (default 0: nine tenths of the process's
	// descriptor limit at start).
	MaxConnections int `mapstructure:"max_connections"`
	// RateBuckets is how many source prefixes each listener with a
	// new-flow rate remembers (default 65536); a flood of more sources
	// forgets the oldest, so memory stays bounded.
	RateBuckets int `mapstructure:"rate_buckets"`
}

// FlowLogs configures an edge's flow logs (control/flowlog).
type FlowLogs struct {
	// Enabled turns flow logs on (default false).
	Enabled bool `mapstructure:"enabled"`
	// Path is the file appended to, or "-" for standard output
	// (default "-").
	Path string `mapstructure:"path"`
	// SampleRate is the fraction of flows logged, above 0 and at most 1
	// (default 1).
	SampleRate float64 `mapstructure:"sample_rate"`
	// QueueSize bounds the records waiting to be written; more are
	// dropped and counted (default 65536).
	QueueSize int `mapstructure:"queue_size"`
	// MaxSizeMB rotates the file when it reaches this many MiB; 0 (the
	// default) rotates only on SIGHUP after an outside rename.
	MaxSizeMB int `mapstructure:"max_size_mb"`
	// MaxFiles is how many rotated files size rotation keeps (default 5).
	MaxFiles int `mapstructure:"max_files"`
}

// BackboneClient tunes an edge's QUIC connections to each region.
type BackboneClient struct {
	// Connections per region, each on its own UDP socket (default 4).
	Connections int `mapstructure:"connections"`
	// StripeLanes is how many connections one TCP flow may be striped
	// over, its first included (default 4; 1 turns striping off; at most
	// connections).
	StripeLanes int `mapstructure:"stripe_lanes"`
	// StripeAfterBytes is how many bytes a flow carries on one connection
	// before it is striped (default 262144).
	StripeAfterBytes int64 `mapstructure:"stripe_after_bytes"`
	// StripeMinRTT: flows to regions nearer than this are not striped
	// (default 20ms).
	StripeMinRTT time.Duration `mapstructure:"stripe_min_rtt"`
	// FEC is "auto" (the default: connections to regions at least
	// FECMinRTT away that offer it protect their packets with forward
	// error correction) or "off".
	FEC string `mapstructure:"fec"`
	// FECMinRTT: connections whose smoothed RTT stays below this never
	// use FEC (default 20ms).
	FECMinRTT time.Duration `mapstructure:"fec_min_rtt"`
	// Retire is "auto" (the default: a connection whose path RTT stays
	// far above the minimum it measured is replaced, backbone/retire.go)
	// or "off".
	Retire string `mapstructure:"retire"`
	// KeepAlivePeriod between keep-alive packets (default 1s).
	KeepAlivePeriod time.Duration `mapstructure:"keepalive_period"`
	// IdleTimeout after which a silent connection is dead (default 3s).
	IdleTimeout time.Duration `mapstructure:"idle_timeout"`
}

// UDPLimits bounds the edge's UDP flow table.
type UDPLimits struct {
	// MaxFlows per edge (default 262144).
	MaxFlows int `mapstructure:"max_flows"`
	// MaxFlowsPerSource per client address (default 1024).
	MaxFlowsPerSource int `mapstructure:"max_flows_per_source"`
}

// BGP configures an edge's BGP speaker.
type BGP struct {
	// LocalASN is the edge's AS number.
	LocalASN uint32 `mapstructure:"local_asn"`
	// RouterID is an IPv4 address identifying the speaker.
	RouterID string `mapstructure:"router_id"`
	// ListenPort for passive sessions; 0 means do not listen (default),
	// -1 is not allowed.
	ListenPort int `mapstructure:"listen_port"`
	// Neighbors are the upstream routers.
	Neighbors []BGPNeighbor `mapstructure:"neighbors"`
	// Communities ("ASN:value") and LargeCommunities ("a:b:c") are attached
	// to every announcement.
	Communities      []string `mapstructure:"communities"`
	LargeCommunities []string `mapstructure:"large_communities"`
	// MED of the announcements (default 0).
	MED uint32 `mapstructure:"med"`
	// ASPathPrepend repeats the local ASN this many extra times.
	ASPathPrepend int `mapstructure:"as_path_prepend"`
	// HoldDown delays a re-announcement after a withdrawal (default 2s).
	HoldDown time.Duration `mapstructure:"hold_down"`
	// ManageAddresses adds the anycast addresses to the loopback interface
	// and removes them at exit.
	ManageAddresses bool `mapstructure:"manage_addresses"`
	// NextHopIPv4 and NextHopIPv6 override next-hop-self for IPv4 and IPv6
	// announcements. Set NextHopIPv6 to the edge's IPv6 address on the
	// router link when IPv6 prefixes ride an IPv4 session.
	NextHopIPv4 string `mapstructure:"next_hop_ipv4"`
	NextHopIPv6 string `mapstructure:"next_hop_ipv6"`
}

// BGPNeighbor is one BGP peer.
type BGPNeighbor struct {
	Address      string        `mapstructure:"address"`
	PeerASN      uint32        `mapstructure:"peer_asn"`
	HoldTime     time.Duration `mapstructure:"hold_time"`
	Keepalive    time.Duration `mapstructure:"keepalive"`
	Password     string        `mapstructure:"password"`
	Multihop     int           `mapstructure:"multihop"`
	Passive      bool          `mapstructure:"passive"`
	LocalAddress string        `mapstructure:"local_address"`
	// TTLSecurity turns on GTSM (RFC 5082) for a directly connected
	// neighbour.
	TTLSecurity bool `mapstructure:"ttl_security"`
}

// Drain configures graceful shutdown of an edge.
type Drain struct {
	// BGPGrace is the time between announcing GRACEFUL_SHUTDOWN and the
	// withdrawal (default 5s).
	BGPGrace time.Duration `mapstructure:"bgp_grace"`
	// Timeout is how long flows are still served after the withdrawal
	// (default 60s).
	Timeout time.Duration `mapstructure:"timeout"`
}

// Region is one gateway node.
type Region struct {
	// Name identifies the node (--node), the endpoint groups that live there,
	// and is the name in its certificate.
	Name string `mapstructure:"name"`
	// Admin is the localhost address of the status API (default 127.0.0.1:9181).
	Admin string `mapstructure:"admin"`
	// RemoteAdmin is as for a PoP.
	RemoteAdmin string `mapstructure:"remote_admin"`
	// Backbone says where the region accepts edges.
	Backbone BackboneServer `mapstructure:"backbone"`
	// Limits are the region's own caps on the flows it serves.
	Limits RegionLimits `mapstructure:"limits"`
}

// RegionLimits cap a region's flows, TCP and UDP together; a new flow over
// a cap is answered "overloaded" and the edge tries another region. Zero
// is no cap.
type RegionLimits struct {
	// MaxFlows caps the region's flows (default 0: none).
	MaxFlows int `mapstructure:"max_flows"`
	// MaxFlowsPerEdge caps the flows one edge opened (default 0: none).
	MaxFlowsPerEdge int `mapstructure:"max_flows_per_edge"`
}

// BackboneServer is the QUIC listening side of a region.
type BackboneServer struct {
	// Listen is the UDP address the region binds.
	Listen string `mapstructure:"listen"`
	// Address is what edges dial (default Listen).
	Address string `mapstructure:"address"`
	// FEC is "auto" (the default: edges that ask get forward error
	// correction) or "off" (the socket stays unwrapped).
	FEC string `mapstructure:"fec"`
}

// FEC modes (BackboneClient.FEC, BackboneServer.FEC), also the modes of
// BackboneClient.Retire.
const (
	FECAuto = "auto"
	FECOff  = "off"
)

// DNS is the authoritative zone the edges serve.
type DNS struct {
	// Zone is the zone's origin, e.g. "accel.example.net"; the parent zone
	// delegates it to Nameservers.
	Zone string `mapstructure:"zone"`
	// Listen are the addresses (host:port) every edge's DNS server binds,
	// over UDP and TCP; anycast addresses are allowed. Default [":53"].
	Listen []string `mapstructure:"listen"`
	// TTL of the A and AAAA records of anycast accelerators (default 300s).
	TTL time.Duration `mapstructure:"ttl"`
	// NSTTL is the TTL of the SOA and NS records and of the nameservers'
	// addresses (default 3600s).
	NSTTL time.Duration `mapstructure:"ns_ttl"`
	// UDPSize is the largest UDP answer the server sends to an EDNS
	// client, 512–4096 (default 1232). Larger answers are truncated and
	// the resolver retries over TCP.
	UDPSize int `mapstructure:"udp_size"`
	// Nameservers are the zone's NS records; names inside the zone need
	// addresses (served as A/AAAA, and to be given as glue to the parent).
	Nameservers []Nameserver `mapstructure:"nameservers"`
	// SOA is the zone's SOA record.
	SOA SOA `mapstructure:"soa"`
	// RRL limits responses per client prefix.
	RRL RRL `mapstructure:"rrl"`
	// Steering maps clients to PoPs for accelerators with steering "dns".
	Steering Steering `mapstructure:"steering"`
}

// Nameserver is one NS record of the zone.
type Nameserver struct {
	// Name is the server's host name, e.g. "ns1.accel.example.net".
	Name string `mapstructure:"name"`
	// Addresses of a name inside the zone (required there, refused
	// elsewhere).
	Addresses []string `mapstructure:"addresses"`
}

// SOA is the zone's start of authority.
type SOA struct {
	// MName is the primary server (default the first nameserver).
	MName string `mapstructure:"mname"`
	// RName is the responsible mailbox written as a name (default
	// "hostmaster.<zone>").
	RName string `mapstructure:"rname"`
	// Serial of the zone (default 1).
	Serial uint32 `mapstructure:"serial"`
	// Refresh, Retry and Expire are for secondaries (defaults 3600s, 900s,
	// 604800s).
	Refresh time.Duration `mapstructure:"refresh"`
	Retry   time.Duration `mapstructure:"retry"`
	Expire  time.Duration `mapstructure:"expire"`
	// Minimum is the TTL of negative answers (NXDOMAIN, no data), default
	// 60s.
	Minimum time.Duration `mapstructure:"minimum"`
}

// RRL is response-rate limiting (BIND's design): each client prefix may get
// ResponsesPerSecond answers of one kind per second over UDP; beyond that
// answers are dropped, except that every Slip-th one is sent truncated so a
// real resolver retries over TCP, which is never limited.
type RRL struct {
	// ResponsesPerSecond per client prefix and kind of answer (default 20).
	ResponsesPerSecond int `mapstructure:"responses_per_second"`
	// Slip: every Slip-th limited answer is sent as an empty truncated one;
	// 0 drops them all (default 2).
	Slip *int `mapstructure:"slip"`
	// IPv4PrefixLen and IPv6PrefixLen group clients (defaults 24 and 56).
	IPv4PrefixLen int `mapstructure:"ipv4_prefix_len"`
	IPv6PrefixLen int `mapstructure:"ipv6_prefix_len"`
}

// Steering maps client prefixes to PoPs for DNS-steered accelerators.
type Steering struct {
	// TTL of steered answers (default 30s): how long a resolver may keep
	// sending clients to a PoP that stopped being ready.
	TTL time.Duration `mapstructure:"ttl"`
	// PoPs are the PoPs that serve steered accelerators, with the unicast
	// addresses clients reach them on.
	PoPs []SteeringPoP `mapstructure:"pops"`
	// Clients maps client prefixes (from EDNS Client Subnet, else the
	// resolver's address; longest match wins) to PoPs in order of
	// preference.
	Clients []ClientRule `mapstructure:"clients"`
	// CatchAll is the preference order for clients that match no prefix.
	// Required when any accelerator has steering "dns".
	CatchAll []string `mapstructure:"catch_all"`
}

// SteeringPoP is one PoP's unicast addresses.
type SteeringPoP struct {
	// Name is a PoP of topology.pops.
	Name string `mapstructure:"name"`
	// Addresses are the PoP's unicast IPv4 and IPv6 addresses: steered
	// answers carry them, and the PoP listens on them for steered
	// accelerators.
	Addresses []string `mapstructure:"addresses"`
}

// ClientRule sends clients of one prefix to PoPs in order of preference.
type ClientRule struct {
	// Prefix is a CIDR prefix without host bits.
	Prefix string `mapstructure:"prefix"`
	// PoPs are names of dns.steering.pops, nearest first.
	PoPs []string `mapstructure:"pops"`
}
