package node

import (
	"reflect"
	"slices"

	"github.com/anyedge/anyedge/control/config"
)

// fixedSettings are the settings of doc that node n reads only when it
// starts, keyed by document path (a node or region by its name: the
// index may move). A reload that changes one applies everything else and
// lists the path in /status under restart_required; the node keeps
// running the old value until it restarts. Everything not listed here is
// applied by a reload (README, "Reloading the configuration").
func fixedSettings(doc *config.Document, n config.Node) map[string]any {
	m := map[string]any{"topology.pki_dir": doc.Topology.PKIDir}
	switch n.Role {
	case config.RolePoP:
		p := "topology.pops[" + n.Name + "]."
		pop := n.PoP
		m[p+"admin"] = pop.Admin
		m[p+"remote_admin"] = pop.RemoteAdmin
		m[p+"backbone"] = pop.Backbone
		m[p+"bgp"] = pop.BGP
		m[p+"dns_listen"] = pop.DNSListen
		m[p+"flow_logs"] = pop.FlowLogs
		m[p+"limits"] = pop.Limits // the process-wide connection cap, the rate tables' size
		// What the edge dials: a pool is dialled once.
		for _, r := range doc.Topology.Regions {
			m["topology.regions["+r.Name+"].backbone.address"] = r.Backbone.Address
		}
		m["dns"] = doc.DNS != nil
		if doc.DNS != nil {
			m["dns.listen"] = doc.DNS.Listen
			m["dns.udp_size"] = doc.DNS.UDPSize
			m["dns.rrl"] = doc.DNS.RRL
		}
	case config.RoleRegion:
		p := "topology.regions[" + n.Name + "]."
		m[p+"admin"] = n.Region.Admin
		m[p+"remote_admin"] = n.Region.RemoteAdmin
		m[p+"backbone.listen"] = n.Region.Backbone.Listen
		m[p+"backbone.fec"] = n.Region.Backbone.FEC // whether the socket is wrapped
		m[p+"limits"] = n.Region.Limits             // the gateway's flow caps
	}
	return m
}

// fixedChanges lists, in order, the paths whose values differ between
// the settings a node started with and those of a new document. A path
// only one of them has (a region added or removed) is not a change of a
// fixed setting.
func fixedChanges(started, next map[string]any) []string {
	var out []string
	for path, v := range next {
		if old, ok := started[path]; ok && !reflect.DeepEqual(old, v) {
			out = append(out, path)
		}
	}
	slices.Sort(out)
	return out
}
