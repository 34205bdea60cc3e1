package node

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/control/config"
	dnsedge "github.com/anyedge/anyedge/edge/dns"
	"github.com/anyedge/anyedge/internal/readme"
)

// TestDelegationExample: the parent-zone records README shows are exactly
// the NS records and nameserver addresses the README's example document
// makes every edge serve.
func TestDelegationExample(t *testing.T) {
	yaml := readme.Fence(t, "## Authoritative DNS and DNS steering")
	yaml = strings.ReplaceAll(yaml, "listeners: [...]",
		"listeners: [{protocol: tcp, port_ranges: [{from: 443}], endpoint_groups: [{region: eu}]}]")
	yaml += `topology:
  pops: [{name: pop-fra}, {name: pop-nyc}]
  regions: [{name: eu, backbone: {listen: "198.18.9.1:4433"}}]
`
	doc, err := config.Load([]byte(yaml), config.LoadOptions{Env: []string{}})
	require.NoError(t, err, "the README's example document:\n%s", yaml)
	zc, err := dnsZoneConfig(doc)
	require.NoError(t, err)
	z, err := dnsedge.NewZone(zc)
	require.NoError(t, err)
	srv, err := dnsedge.New(dnsedge.Config{Listen: []string{"127.0.0.1:0"}}, z)
	require.NoError(t, err)
	require.NoError(t, srv.Listen())
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()

	var parent []dns.RR
	zp := dns.NewZoneParser(strings.NewReader(readme.Fence(t, "<!-- delegation:begin -->")), "example.net.", "README")
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		parent = append(parent, rr)
	}
	require.NoError(t, zp.Err())

	c := &dns.Client{Timeout: 5 * time.Second}
	ask := func(name string, qtype uint16) []dns.RR {
		r, _, err := c.Exchange(new(dns.Msg).SetQuestion(name, qtype), srv.Addrs()[0].String())
		require.NoError(t, err)
		require.True(t, r.Authoritative)
		return r.Answer
	}
	canon := func(rrs []dns.RR) []string {
		var out []string
		for _, rr := range rrs {
			out = append(out, strings.Join(strings.Fields(strings.ToLower(rr.String())), " "))
		}
		slices.Sort(out)
		return out
	}
	var ns, glue []dns.RR
	for _, rr := range parent {
		if rr.Header().Rrtype == dns.TypeNS {
			ns = append(ns, rr)
			glue = append(glue, ask(rr.(*dns.NS).Ns, dns.TypeA)...)
		}
	}
	require.Len(t, ns, 2)
	require.Equal(t, canon(ns), canon(ask(z.Origin(), dns.TypeNS)), "the parent's NS records are the zone's")
	var parentGlue []dns.RR
	for _, rr := range parent {
		if rr.Header().Rrtype == dns.TypeA {
			parentGlue = append(parentGlue, rr)
		}
	}
	require.Equal(t, canon(parentGlue), canon(glue), "the glue is what the zone serves for its nameservers")
}
