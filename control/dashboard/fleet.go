package dashboard

import (
	"context"

	"github.com/anyedge/anyedge/backbone/pki"
	"github.com/anyedge/anyedge/control/admin"
	"github.com/anyedge/anyedge/control/config"
)

// FleetTargets returns a target for every PoP and region of doc, in
// document order. With operator credentials, a node that has a
// remote_admin address is read there over mutual TLS, its certificate
// checked against its name; every other node is read over plain HTTP at
// its (loopback) admin address, which works only on the node's own machine
// or for `anyedge dev`.
func FleetTargets(doc *config.Document, op *pki.OperatorClient) []Target {
	var out []Target
	add := func(name string, role config.Role, local, remote string) {
		t := Target{Name: name, Role: string(role), Addr: local}
		c := admin.NewClient(local, nil)
		if op != nil && remote != "" {
			t.Addr = remote
			c = admin.NewClient(remote, op.TLSConfig(name))
		}
		t.Source = adminSource{c}
		out = append(out, t)
	}
	for _, p := range doc.Topology.PoPs {
		add(p.Name, config.RolePoP, p.Admin, p.RemoteAdmin)
	}
	for _, r := range doc.Topology.Regions {
		add(r.Name, config.RoleRegion, r.Admin, r.RemoteAdmin)
	}
	return out
}

// adminSource reads a node's status over its admin API.
type adminSource struct{ c *admin.Client }

// Status implements Source.
func (s adminSource) Status(ctx context.Context) ([]byte, error) { return s.c.Get(ctx, "/status") }

// Close releases the client's connections.
func (s adminSource) Close() { s.c.Close() }
