// Package portmap is the port map of custom routing accelerators: which
// listener port reaches which destination address and port. An edge uses
// it to find the subnet (and so the region) behind the port a client
// reached, a region uses the very same function to compute the address it
// dials from the listener port and the subnet ID in a stream header (so
// that nothing on the wire can make a region dial an address outside its
// own configuration), and operators and matchmakers use it to ask which
// port reaches a given destination.
//
// # The mapping
//
// Every subnet of a custom routing listener owns one block of listener
// ports that starts at its configured base:
//
//	listener port = base + i·k + j
//
// where i is the destination address's offset in the subnet (0 for the
// subnet's first address), k is the number of destination ports of the
// subnet's endpoint group (its destination port ranges, concatenated in
// configuration order) and j is the destination port's index among them.
// The block has 2^(32−prefix length)·k ports. So a subnet's mapping depends
// only on its own CIDR, its base and its group's destination ports: adding,
// removing or reordering other subnets never moves it. (A mapping computed
// from list positions would move every subnet after an insertion; an
// explicit base, with blocks validated not to overlap, cannot.)
//
// A compiled Table is immutable and safe for concurrent use; a reload
// compiles a new one.
package portmap

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Proto is a set of transport protocols.
type Proto uint8

// Protocols.
const (
	TCP Proto = 1 << iota
	UDP
)

// Has reports whether p contains q.
func (p Proto) Has(q Proto) bool { return p&q == q && q != 0 }

// String lists the protocols: "tcp", "udp" or "tcp,udp".
func (p Proto) String() string {
	var parts []string
	if p.Has(TCP) {
		parts = append(parts, "tcp")
	}
	if p.Has(UDP) {
		parts = append(parts, "udp")
	}
	return strings.Join(parts, ",")
}

// Names lists the protocols as separate strings.
func (p Proto) Names() []string {
	if p == 0 {
		return []string{}
	}
	return strings.Split(p.String(), ",")
}

// ParseProto returns the protocol named s ("tcp" or "udp").
func ParseProto(s string) (Proto, bool) {
	switch s {
	case "tcp":
		return TCP, true
	case "udp":
		return UDP, true
	}
	return 0, false
}

// PortRange is an inclusive range of ports.
type PortRange struct{ From, To uint16 }

// Len is the number of ports in r.
func (r PortRange) Len() int { return int(r.To) - int(r.From) + 1 }

// DestPorts is an inclusive range of destination ports and the protocols
// served on them.
type DestPorts struct {
	From, To uint16
	Protos   Proto
}

// Subnet is one destination subnet of a custom routing listener.
type Subnet struct {
	// ID names the subnet fleet-wide (the endpoint ID of stream headers).
	ID string
	// Region is the region whose gateway dials the subnet.
	Region string
	// Prefix is the subnet (IPv4, no host bits).
	Prefix netip.Prefix
	// Base is the first listener port of the subnet's block.
	Base uint16
	// Ports are the destination ports, in order.
	Ports []DestPorts
}

// Listener is what the port map needs to know about one custom routing
// listener.
type Listener struct {
	// Key names the listener ("accelerator/custom/firstport").
	Key string
	// Accelerator names the accelerator.
	Accelerator string
	// Ports are the listener's port ranges: every block lies in one.
	Ports []PortRange
	// Subnets are the destination subnets of every endpoint group.
	Subnets []Subnet
}

// Size is the number of destinations of a subnet of prefix with the
// destination ports ports: addresses times ports. It does not overflow for
// any IPv4 prefix.
func Size(prefix netip.Prefix, ports []DestPorts) uint64 {
	var k uint64
	for _, r := range ports {
		if r.To >= r.From {
			k += uint64(r.To) - uint64(r.From) + 1
		}
	}
	bits := prefix.Addr().BitLen() - prefix.Bits()
	if bits >= 64 {
		return 0
	}
	return k << uint(bits)
}

// Block returns the first and last listener port of the subnet's block
// (last may exceed 65535: the block does not fit).
func Block(base uint16, prefix netip.Prefix, ports []DestPorts) (first, last uint64) {
	return uint64(base), uint64(base) + Size(prefix, ports) - 1
}

// Mapping is one listener port and the destination it reaches.
type Mapping struct {
	// ListenerPort is the accelerator port a client connects to.
	ListenerPort uint16
	// Dest is the destination address and port.
	Dest netip.AddrPort
	// Protos are the protocols served on Dest's port.
	Protos Proto
	// Subnet is the subnet Dest belongs to.
	Subnet *Subnet
}

// Table is a compiled listener: forward (port → destination) and reverse
// (destination → port) lookups in O(log n) and O(1).
type Table struct {
	key, accelerator string
	ports            []PortRange
	blocks           []block // by first port
	// byPrefix finds the subnets containing an address: one map lookup per
	// distinct prefix length.
	byPrefix map[netip.Prefix][]int // → index in blocks
	lengths  []int                  // distinct prefix lengths, longest first
}

type block struct {
	s           *Subnet
	first, last uint16
	k           int   // destination ports per address
	offsets     []int // offsets[i]: index of s.Ports[i].From among the k ports
	network     uint32
}

// Compile checks l and builds its Table. It keeps no reference to l's
// slices.
func Compile(l Listener) (*Table, error) {
	t := &Table{key: l.Key, accelerator: l.Accelerator, ports: slices.Clone(l.Ports), byPrefix: map[netip.Prefix][]int{}}
	var errs []error
	ids := map[string]bool{}
	for i := range l.Subnets {
		s := l.Subnets[i]
		s.Ports = slices.Clone(s.Ports)
		switch {
		case s.ID == "":
			errs = append(errs, fmt.Errorf("subnet %d: empty id", i))
			continue
		case ids[s.ID]:
			errs = append(errs, fmt.Errorf("subnet %q: duplicate id", s.ID))
			continue
		case !s.Prefix.IsValid() || !s.Prefix.Addr().Is4() || s.Prefix != s.Prefix.Masked():
			errs = append(errs, fmt.Errorf("subnet %q: %v is not an IPv4 prefix without host bits", s.ID, s.Prefix))
			continue
		}
		ids[s.ID] = true
		b := block{s: &s, first: s.Base}
		for _, r := range s.Ports {
			if r.From == 0 || r.To < r.From || r.Protos == 0 {
				errs = append(errs, fmt.Errorf("subnet %q: bad destination ports %d-%d", s.ID, r.From, r.To))
				continue
			}
			b.offsets = append(b.offsets, b.k)
			b.k += int(r.To) - int(r.From) + 1
		}
		if b.k == 0 {
			errs = append(errs, fmt.Errorf("subnet %q: no destination ports", s.ID))
			continue
		}
		first, last := Block(s.Base, s.Prefix, s.Ports)
		if !inOneRange(l.Ports, first, last) {
			errs = append(errs, fmt.Errorf("subnet %q: ports %d-%d are not within one listener port range", s.ID, first, last))
			continue
		}
		b.last = uint16(last)
		a4 := s.Prefix.Addr().As4()
		b.network = uint32(a4[0])<<24 | uint32(a4[1])<<16 | uint32(a4[2])<<8 | uint32(a4[3])
		t.blocks = append(t.blocks, b)
	}
	slices.SortFunc(t.blocks, func(a, b block) int { return cmp.Compare(a.first, b.first) })
	for i := 1; i < len(t.blocks); i++ {
		if p, c := t.blocks[i-1], t.blocks[i]; c.first <= p.last {
			errs = append(errs, fmt.Errorf("subnets %q and %q: ports %d-%d overlap %d-%d", p.s.ID, c.s.ID, p.first, p.last, c.first, c.last))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("portmap: listener %s: %w", l.Key, err)
	}
	for i, b := range t.blocks {
		t.byPrefix[b.s.Prefix] = append(t.byPrefix[b.s.Prefix], i)
		if !slices.Contains(t.lengths, b.s.Prefix.Bits()) {
			t.lengths = append(t.lengths, b.s.Prefix.Bits())
		}
	}
	slices.SortFunc(t.lengths, func(a, b int) int { return cmp.Compare(b, a) })
	return t, nil
}

func inOneRange(rs []PortRange, first, last uint64) bool {
	for _, r := range rs {
		if first >= uint64(r.From) && last <= uint64(r.To) {
			return true
		}
	}
	return false
}

// Key returns the listener key.
func (t *Table) Key() string { return t.key }

// Accelerator returns the accelerator's name.
func (t *Table) Accelerator() string { return t.accelerator }

// Ports returns the listener's port ranges.
func (t *Table) Ports() []PortRange { return slices.Clone(t.ports) }

// Subnets returns the table's subnets in the order of their blocks.
func (t *Table) Subnets() []*Subnet {
	out := make([]*Subnet, len(t.blocks))
	for i := range t.blocks {
		out[i] = t.blocks[i].s
	}
	return out
}

// Subnet returns the subnet called id.
func (t *Table) Subnet(id string) (*Subnet, bool) {
	for i := range t.blocks {
		if t.blocks[i].s.ID == id {
			return t.blocks[i].s, true
		}
	}
	return nil, false
}

// Forward returns the destination listener port p reaches; false when p is
// in no subnet's block.
func (t *Table) Forward(p uint16) (Mapping, bool) {
	i, found := slices.BinarySearchFunc(t.blocks, p, func(b block, p uint16) int { return cmp.Compare(b.first, p) })
	if !found {
		i--
	}
	if i < 0 || p > t.blocks[i].last {
		return Mapping{}, false
	}
	return t.blocks[i].forward(p), true
}

// ForwardIn is Forward restricted to the subnet called id: what a region
// computes from a stream header. False when p is not in that subnet's
// block.
func (t *Table) ForwardIn(id string, p uint16) (Mapping, bool) {
	m, ok := t.Forward(p)
	if !ok || m.Subnet.ID != id {
		return Mapping{}, false
	}
	return m, true
}

func (b *block) forward(p uint16) Mapping {
	o := int(p - b.first)
	i, j := o/b.k, o%b.k
	r := len(b.offsets) - 1
	for r > 0 && b.offsets[r] > j {
		r--
	}
	dp := b.s.Ports[r]
	return Mapping{
		ListenerPort: p,
		Dest:         netip.AddrPortFrom(addr4(b.network+uint32(i)), dp.From+uint16(j-b.offsets[r])),
		Protos:       dp.Protos,
		Subnet:       b.s,
	}
}

func addr4(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// Reverse returns the mappings that reach dest, one per subnet containing
// its address (subnets of different regions may share a CIDR), appended to
// out. It allocates nothing when out has room.
func (t *Table) Reverse(dest netip.AddrPort, out []Mapping) []Mapping {
	a := dest.Addr().Unmap()
	if !a.Is4() {
		return out
	}
	for _, bits := range t.lengths {
		pfx, _ := a.Prefix(bits)
		for _, bi := range t.byPrefix[pfx] {
			b := &t.blocks[bi]
			j, protos, ok := b.portIndex(dest.Port())
			if !ok {
				continue
			}
			a4 := a.As4()
			i := int((uint32(a4[0])<<24 | uint32(a4[1])<<16 | uint32(a4[2])<<8 | uint32(a4[3])) - b.network)
			out = append(out, Mapping{
				ListenerPort: b.first + uint16(i*b.k+j),
				Dest:         netip.AddrPortFrom(a, dest.Port()),
				Protos:       protos,
				Subnet:       b.s,
			})
		}
	}
	return out
}

// portIndex returns the index of port p among the block's destination
// ports.
func (b *block) portIndex(p uint16) (int, Proto, bool) {
	for r, dp := range b.s.Ports {
		if p >= dp.From && p <= dp.To {
			return b.offsets[r] + int(p-dp.From), dp.Protos, true
		}
	}
	return 0, 0, false
}

// All calls yield for every mapping of the table in listener-port order,
// until yield returns false.
func (t *Table) All(yield func(Mapping) bool) {
	for i := range t.blocks {
		b := &t.blocks[i]
		for p := uint32(b.first); p <= uint32(b.last); p++ {
			if !yield(b.forward(uint16(p))) {
				return
			}
		}
	}
}

// BlockOf returns the first and last listener port of the subnet called
// id.
func (t *Table) BlockOf(id string) (first, last uint16, ok bool) {
	for i := range t.blocks {
		if b := &t.blocks[i]; b.s.ID == id {
			return b.first, b.last, true
		}
	}
	return 0, 0, false
}
