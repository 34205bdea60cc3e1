package config

import "fmt"

// Role is what a node does in the fleet.
type Role string

// Roles of a node.
const (
	// RolePoP is an edge node that accepts client traffic.
	RolePoP Role = "edge"
	// RoleRegion is a gateway node next to endpoints.
	RoleRegion Role = "region"
)

// Node is the part of a document that one node (picked by --node) runs.
type Node struct {
	// Name is the node's name, as given to --node.
	Name string
	// Role says which of PoP and Region is set.
	Role Role
	// PoP points into the document when Role is RolePoP.
	PoP *PoP
	// Region points into the document when Role is RoleRegion.
	Region *Region
}

// Node finds the PoP or region called name. The returned pointers point into
// d.
func (d *Document) Node(name string) (Node, error) {
	var pops, regions []string
	for i := range d.Topology.PoPs {
		p := &d.Topology.PoPs[i]
		if p.Name == name {
			return Node{Name: name, Role: RolePoP, PoP: p}, nil
		}
		pops = append(pops, p.Name)
	}
	for i := range d.Topology.Regions {
		r := &d.Topology.Regions[i]
		if r.Name == name {
			return Node{Name: name, Role: RoleRegion, Region: r}, nil
		}
		regions = append(regions, r.Name)
	}
	return Node{}, fmt.Errorf("--node %q names no pop or region (pops: %s; regions: %s)",
		name, list(pops), list(regions))
}

// NodeNames lists the names of every node: the regions, then the PoPs, in
// document order.
func (d *Document) NodeNames() []string {
	names := make([]string, 0, len(d.Topology.Regions)+len(d.Topology.PoPs))
	for _, r := range d.Topology.Regions {
		names = append(names, r.Name)
	}
	for _, p := range d.Topology.PoPs {
		names = append(names, p.Name)
	}
	return names
}

// EndpointByID finds the endpoint with the given ID and the accelerator,
// listener and group it belongs to. The pointers point into d.
func (d *Document) EndpointByID(id string) (acc *Accelerator, l *Listener, g *EndpointGroup, e *Endpoint, ok bool) {
	for ai := range d.Accelerators {
		acc = &d.Accelerators[ai]
		for li := range acc.Listeners {
			l = &acc.Listeners[li]
			for gi := range l.EndpointGroups {
				g = &l.EndpointGroups[gi]
				for ei := range g.Endpoints {
					if g.Endpoints[ei].ID == id {
						return acc, l, g, &g.Endpoints[ei], true
					}
				}
			}
		}
	}
	return nil, nil, nil, nil, false
}

// String returns "name (role)".
func (n Node) String() string {
	return n.Name + " (" + string(n.Role) + ")"
}
