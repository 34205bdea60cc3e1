// anyedge dashboard: renders the "nodes" and "history" server-sent events
// of api/events. No framework; every graph is a small inline SVG.
'use strict';

const $ = (id) => document.getElementById(id);
let view = null; // the latest "nodes" event
let hist = { t: [], series: {} }; // the latest "history" event
let lastEvent = 0; // Date.now() of the latest event

// ---- formatting ----
const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) =>
  ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
const num = (v, d = 0) => (v == null || isNaN(v) ? '–' : Number(v).toFixed(d));
function si(v, unit) {
  if (v == null || isNaN(v)) return '–';
  const k = [[1e9, 'G'], [1e6, 'M'], [1e3, 'k']].find(([f]) => Math.abs(v) >= f);
  return k ? (v / k[0]).toFixed(1) + ' ' + k[1] + unit : (v >= 10 || v === 0 ? v.toFixed(0) : v.toFixed(1)) + ' ' + unit;
}
// count shortens a counter: 980, 9.1k, 12M.
function count(v) {
  const k = [[1e9, 'G'], [1e6, 'M'], [1e3, 'k']].find(([f]) => v >= f);
  return k ? (v / k[0]).toFixed(v >= 10 * k[0] ? 0 : 1) + k[1] : String(v);
}
const ms = (v) => (v == null ? '–' : v >= 100 ? v.toFixed(0) + ' ms' : v.toFixed(1) + ' ms');
function dur(s) {
  if (s == null) return '–';
  if (s < 60) return Math.floor(s) + 's';
  if (s < 3600) return Math.floor(s / 60) + 'm' + String(Math.floor(s % 60)).padStart(2, '0');
  if (s < 86400) return Math.floor(s / 3600) + 'h' + String(Math.floor((s % 3600) / 60)).padStart(2, '0');
  return Math.floor(s / 86400) + 'd';
}
const ago = (t) => (t && !t.startsWith('0001') ? dur((Date.now() - Date.parse(t)) / 1000) + ' ago' : '–');
const clock = (t) => new Date(t).toLocaleTimeString([], { hour12: false });
const sum = (m) => Object.values(m || {}).reduce((a, b) => a + b, 0);

// spark draws a series of history as an SVG polyline, broken where values
// are missing; the y axis starts at 0.
function spark(key, cls = '', w = 110, h = 20) {
  const s = hist.series[key] || [];
  const max = Math.max(...s.filter((v) => v != null), 0) || 1;
  const n = Math.max(hist.t.length - 1, 1);
  const lines = [];
  let pts = [];
  s.forEach((v, i) => {
    if (v == null) { if (pts.length) lines.push(pts); pts = []; return; }
    pts.push((i / n * w).toFixed(1) + ',' + (h - 1 - (v / max) * (h - 2)).toFixed(1));
  });
  if (pts.length) lines.push(pts);
  const title = esc(key) + ' — last ' + dur(n * (view ? view.interval_ms : 1000) / 1000) + ', max ' + num(max, 1);
  return `<svg class="spark ${cls}" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}"><title>${title}</title>` +
    lines.map((p) => `<polyline points="${p.length === 1 ? p[0] + ' ' + p[0] : p.join(' ')}"/>`).join('') + '</svg>';
}

// ---- the model: nodes by role, regions named anywhere ----
function model() {
  const pops = view.nodes.filter((n) => n.role === 'edge');
  const regions = view.nodes.filter((n) => n.role === 'region');
  const names = regions.map((r) => r.name);
  for (const p of pops) for (const r of p.status?.regions || []) if (!names.includes(r.name)) names.push(r.name);
  return { pops, regions, names };
}

const nodeDot = (n) => (n.ok ? '<span class="dot good" title="admin API reachable"></span>'
  : `<span class="dot badc" title="${esc(n.error)}"></span>`);

function renderSummary(m) {
  const ready = m.pops.filter((p) => p.ok && p.status?.ready).length;
  const up = m.regions.filter((r) => r.ok).length;
  const eps = m.regions.flatMap((r) => r.status?.endpoints || []);
  const healthy = eps.filter((e) => e.state !== 'unhealthy').length;
  $('title').textContent = view.title || '';
  $('summary').innerHTML = (m.pops.length ? `PoPs ready ${ready}/${m.pops.length}` : '') +
    (m.regions.length ? ` · regions up ${up}/${m.regions.length} · endpoints healthy ${healthy}/${eps.length}` : '') +
    revisions();
  $('problems').innerHTML = view.nodes.filter((n) => !n.ok).map((n) =>
    `<div data-node="${esc(n.name)}" data-ok="false"><b>${esc(n.name)}</b> (${esc(n.role)}${n.addr ? ' at ' + esc(n.addr) : ''}) unreachable: ` +
    `${esc(n.error)}${n.status ? ' — showing what it said ' + ago(n.updated) : ''}</div>`).join('') +
    view.nodes.map(configProblems).join('');
}

// revisions says which nodes run which revision of the document: one
// revision for all, or each with its nodes when they differ.
function revisions() {
  const by = {};
  for (const n of view.nodes) {
    const r = n.status?.config?.revision;
    if (r) (by[r] = by[r] || []).push(n.name);
  }
  const revs = Object.keys(by);
  if (revs.length === 0) return '';
  const over = view.nodes.filter((n) => (n.status?.config?.overrides || []).length).map((n) => n.name);
  const mark = over.length ? ` <span id="overrides" class="warn" data-nodes="${over.map(esc).join(' ')}" ` +
    `title="run-time overrides (anyedge ctl weight, dial) on ${over.map(esc).join(', ')}">+ overrides</span>` : '';
  if (revs.length === 1) return ` · <span id="revisions" data-revisions="1">config ${esc(revs[0])}</span>${mark}`;
  return ` · <span id="revisions" data-revisions="${revs.length}" class="warn">configs: ` +
    revs.map((r) => `${esc(r)} on ${by[r].map(esc).join(', ')}`).join('; ') + `</span>${mark}`;
}

const failedReloads = ['invalid', 'refused', 'failed'];

// configProblems lists what a node says of its document: its last reload
// did not apply, its source (etcd) is out of reach, settings wait for a
// restart, overrides are in force.
function configProblems(n) {
  const c = n.status?.config;
  if (!c) return '';
  const out = [];
  const last = c.last_reload;
  if (last && failedReloads.includes(last.result)) {
    out.push(`<div data-node="${esc(n.name)}" data-reload="${esc(last.result)}"><b>${esc(n.name)}</b>: config reload ` +
      `${esc(last.result)} ${ago(last.at)} (${esc(last.trigger)}); revision ${esc(c.revision)} stays in force: ` +
      `<span title="${esc(last.error)}">${esc((last.error || '').split('\n')[0])}</span></div>`);
  }
  if ((c.restart_required || []).length) {
    out.push(`<div data-node="${esc(n.name)}" data-restart="true"><b>${esc(n.name)}</b> needs a restart to apply: ` +
      `${c.restart_required.map(esc).join(', ')}</div>`);
  }
  const src = c.source_state;
  if (src && !src.connected) {
    out.push(`<div data-node="${esc(n.name)}" data-source="lost"><b>${esc(n.name)}</b> cannot reach its config source` +
      `${c.source ? ' (' + esc(c.source) + ')' : ''} since ${ago(src.since)}; revision ${esc(c.revision)} stays in force: ` +
      `<span title="${esc(src.last_error)}">${esc(src.last_error || '')}</span></div>`);
  }
  if ((c.overrides || []).length) {
    out.push(`<div data-node="${esc(n.name)}" data-overrides="${c.overrides.length}"><b>${esc(n.name)}</b> ` +
      `<span class="warn">overrides</span> the document (until ctl reset): ` +
      c.overrides.map((o) => `${esc(o.kind)} ${esc(o.name)} ${esc(o.value)} <span class="muted">${ago(o.since)}</span>`).join(', ') +
      '</div>');
  }
  return out.join('');
}

function renderMatrix(m) {
  if (!m.pops.length) return '';
  const head = m.names.map((name) => {
    const r = m.regions.find((x) => x.name === name);
    const sub = r ? (r.ok ? `${num(r.status?.active_flows)} flows` : 'admin unreachable') : '';
    return `<th data-region="${esc(name)}">${r ? nodeDot(r) : ''}${esc(name)} <span class="muted">${sub}</span></th>`;
  }).join('');
  const rows = m.pops.map((p) => {
    const cells = m.names.map((name) => {
      const r = (p.status?.regions || []).find((x) => x.name === name);
      const attrs = `data-pop="${esc(p.name)}" data-region="${esc(name)}"`;
      if (!p.status) return `<td ${attrs} data-reachable="unknown" class="unk">?</td>`;
      if (!r) return `<td ${attrs} data-reachable="none" class="muted">—</td>`;
      const stale = p.ok ? '' : ' stale';
      if (!r.reachable) {
        return `<td ${attrs} data-reachable="false" class="${stale}"><div class="cell down"><span class="v">✕ unreachable</span>` +
          `${spark(p.name + '/rtt/' + name, 'rtt', 64)}</div></td>`;
      }
      return `<td ${attrs} data-reachable="true" class="${stale}"><div class="cell"><span class="v"><span class="dot good"></span>` +
        `${ms(r.rtt_ms)} · ${num(100 * r.loss_ratio, 1)}%<br><span class="muted">${r.connections} conn · ${num(r.open_streams)} str</span></span>` +
        `${spark(p.name + '/rtt/' + name, 'rtt', 64)}</div></td>`;
    }).join('');
    return `<tr><th>${nodeDot(p)}${esc(p.name)}</th>${cells}</tr>`;
  }).join('');
  return `<table><tr><th></th>${head}</tr>${rows}</table>`;
}

function renderPoPs(m) {
  if (!m.pops.length) return '';
  const rows = m.pops.map((p) => {
    const s = p.status;
    if (!s) return `<tr data-pop="${esc(p.name)}"><th>${nodeDot(p)}${esc(p.name)}</th><td colspan="5" class="badc">${esc(p.error)}</td></tr>`;
    const ready = s.ready ? '<span class="badge good">ready</span>' : '<span class="badge badc">not ready</span>';
    const drain = s.draining ? `<span class="badge warn">draining: ${esc(s.drain_phase)}</span>` : '<span class="badge">serving</span>';
    const accs = (s.accelerators || []).map((a) =>
      `<span class="${a.ready ? 'good' : 'badc'}" title="accelerator ${esc(a.name)}">${esc(a.name)}${a.fail_open ? ' <b class="warn">fail-open</b>' : ''}</span>`).join(' ');
    const peers = s.bgp_peers || [];
    const bgp = peers.length ? peers.map((b) =>
      `<span class="${b.state === 'established' ? 'good' : 'badc'}" title="${esc(b.last_error)}">${esc(b.address)} ${esc(b.state)}` +
      `${b.state === 'established' ? ' ' + dur(b.uptime_seconds) + ', ' + b.prefixes_advertised + ' pfx' : ''}</span>`).join('<br>')
      : '<span class="muted">no BGP</span>';
    const announced = (s.announced || []).map(esc).join(' ') || '<span class="muted">none</span>';
    return `<tr data-pop="${esc(p.name)}" data-ready="${!!s.ready}" data-draining="${!!s.draining}" class="${p.ok ? '' : 'stale'}">` +
      `<th>${nodeDot(p)}${esc(p.name)}</th><td class="wrap">${ready} ${drain} ${accs}</td><td>${bgp}</td><td class="wrap">${announced}</td>` +
      `<td class="num">${num(p.rates?.flows, 1)}/s</td><td>${spark(p.name + '/flows', '', 100, 16)}</td></tr>`;
  }).join('');
  return `<table><tr><th>PoP</th><th>state, accelerators</th><th>BGP sessions</th><th>announced</th><th class="num" colspan="2">new flows</th></tr>${rows}</table>`;
}

// served flows that ended normally; every other end is worth a look.
const normalEnds = ['client_fin', 'endpoint_fin', 'idle_timeout'];

// reasons lists a listener's non-zero refusals (red), abnormal ends and
// UDP drops.
function reasons(l) {
  const nz = (m, skip = []) => Object.entries(m || {}).filter(([k, v]) => v > 0 && !skip.includes(k));
  const out = [
    ...nz(l.refused).map(([k, v]) => `<span class="badc">${esc(k)}&nbsp;${v}</span>`),
    ...nz(l.closed, normalEnds).map(([k, v]) => `<span class="warn">${esc(k)}&nbsp;${v}</span>`),
    ...nz(l.udp?.dropped).map(([k, v]) => `<span class="badc">dropped at ${esc(k)}&nbsp;${v}</span>`),
  ];
  return out.join(', ') || '<span class="muted">none</span>';
}

function renderListeners(m) {
  const rows = m.pops.filter((p) => p.status).flatMap((p) => (p.status.listeners || []).map((l) => {
    const r = (k) => p.rates?.[l.key + '/' + k];
    const state = l.fail_open ? '<span class="badge warn">fail-open</span>'
      : l.ready ? '<span class="badge good">ready</span>' : '<span class="badge badc">not ready</span>';
    return `<tr data-pop="${esc(p.name)}" data-listener="${esc(l.key)}" data-fail-open="${!!l.fail_open}" class="${p.ok ? '' : 'stale'}">` +
      `<td>${esc(p.name)}</td><td>${esc(l.key)}</td><td>${state}</td><td class="num">${num(r('new_flows'), 1)}</td>` +
      `<td>${spark(p.name + '/' + l.key + '/new_flows', '', 64, 16)}</td><td class="num">${num(l.active_flows)}</td>` +
      `<td class="num">${si(r('bytes_in'), 'B/s')}</td><td class="num">${si(r('bytes_out'), 'B/s')}</td>` +
      `<td class="num">${num(l.retries)} / ${num(l.hedges)}</td><td class="wrap">${reasons(l)}</td></tr>`;
  })).join('');
  if (!rows) return '';
  return '<table><tr><th>PoP</th><th>listener</th><th>state</th><th class="num">new/s</th><th></th><th class="num">active</th>' +
    '<th class="num">in</th><th class="num">out</th><th class="num">retries / hedges</th>' +
    `<th title="failures and refusals by reason; abnormal ends; UDP drops">failures, refusals</th></tr>${rows}</table>`;
}

function renderEndpoints(m) {
  const rows = m.regions.map((r) => {
    const eps = r.status?.endpoints || [];
    const head = `<tr class="region-row" data-region="${esc(r.name)}"><td colspan="7">${nodeDot(r)}${esc(r.name)} ` +
      (r.ok ? `<span class="muted">${num(r.status?.active_flows)} active flows</span>`
        : `<span class="badc">unreachable: ${esc(r.error)}</span>`) + '</td></tr>';
    return head + eps.map((e) => {
      const cls = e.state === 'unhealthy' ? 'badc' : e.state === 'healthy' ? 'good' : 'unk';
      const changes = (e.changes || []).slice(-3).reverse().map((c) =>
        `<span class="${c.to === 'healthy' ? 'good' : c.to === 'unhealthy' ? 'badc' : 'unk'}" ` +
        `title="${esc(c.from)} → ${esc(c.to)}${c.reason ? ': ' + esc(c.reason) : ''}">` +
        `${c.to === 'healthy' ? '▲' : c.to === 'unhealthy' ? '▼' : '?'} ${clock(c.at)}</span>`).join('');
      return `<tr data-endpoint="${esc(e.id)}" data-state="${esc(e.state)}" class="${r.ok ? '' : 'stale'}">` +
        `<td title="listener ${esc(e.listener)}">${esc(e.id)} <span class="muted">${esc((e.listener || '').split('/')[1])}</span></td>` +
        `<td><span class="badge ${cls}">${esc(e.state)}${e.ejected ? ' (ejected)' : ''}</span></td>` +
        `<td class="reason muted" title="${esc(e.reason)}">${esc(e.reason)}</td><td class="num">${ms(e.latency_ms)}</td>` +
        `<td class="num">${num(e.weight)}</td><td class="muted">${ago(e.changed)}</td><td class="chips">${changes}</td></tr>`;
    }).join('');
  }).join('');
  if (!rows) return '';
  return '<table><tr><th>endpoint</th><th>health</th><th>reason</th><th class="num">probe</th><th class="num">weight</th>' +
    `<th>since</th><th>last changes</th></tr>${rows}</table>`;
}

// chips lists the non-zero entries of a counter map, largest first, each
// coloured by cls(key); beyond the first max, a "+N" names the rest.
function chips(m, cls = () => '', max = Infinity) {
  const all = Object.entries(m || {}).filter(([, v]) => v > 0).sort((a, b) => b[1] - a[1]);
  const out = all.slice(0, max).map(([k, v]) => `<span class="${cls(k)}" data-key="${esc(k)}">${esc(k)} ${count(v)}</span>`);
  if (all.length > max) out.push(`<span class="muted" title="${esc(all.slice(max).map(([k, v]) => k + ' ' + v).join(', '))}">+${all.length - max}</span>`);
  return out.join(' ') || '<span class="muted">none</span>';
}

// rcodeClass colours DNS answers: REFUSED amber, other errors red,
// NOERROR and NXDOMAIN plain.
const rcodeClass = (k) => (['NOERROR', 'NXDOMAIN'].includes(k) ? '' : k === 'REFUSED' ? 'warn' : 'badc');

// steering lists, per DNS-steered accelerator, the PoPs its answers name
// now: once when every PoP says the same, else as each PoP sees it.
function steering(pops) {
  const views = {}; // accelerator → PoP → available PoPs
  for (const p of pops) for (const s of p.status.dns.steering || []) (views[s.accelerator] ||= {})[p.name] = s.available || [];
  return Object.entries(views).map(([acc, byPoP]) => {
    const lists = Object.entries(byPoP);
    const same = lists.every(([, l]) => l.join() === lists[0][1].join());
    const names = (l) => (l.length ? l.map((n) => `<span class="good">${esc(n)}</span>`).join(' ')
      : '<span class="badc">none: answers fail open</span>');
    const body = same ? names(lists[0][1])
      : lists.map(([pop, l]) => `<span class="muted">${esc(pop)} says</span> ${names(l)}`).join(' · ');
    return `<div class="steer" data-accelerator="${esc(acc)}" data-available="${esc(same ? lists[0][1].join(' ') : '')}">` +
      `<b>${esc(acc)}</b> → ${body}</div>`;
  }).join('');
}

function renderDNS(m) {
  const pops = m.pops.filter((p) => p.status?.dns);
  if (!pops.length) return '';
  const rows = pops.map((p) => {
    const d = p.status.dns;
    const view = d.fleet_view || !(d.steering || []).length ? ''
      : ' <span class="badge warn" title="no region relays the edges\' states: steered answers follow the configured order">no fleet view</span>';
    return `<tr data-pop="${esc(p.name)}" data-dns-queries="${d.queries_udp + d.queries_tcp}" class="${p.ok ? '' : 'stale'}">` +
      `<th title="${esc(d.zone)} on ${esc((d.listen || []).join(', '))}">${nodeDot(p)}${esc(p.name)}${view}</th>` +
      `<td class="num">${num(p.rates?.['dns/queries'], 1)}</td><td>${spark(p.name + '/dns/queries', '', 44, 16)}</td>` +
      `<td title="UDP ${d.queries_udp}, TCP ${d.queries_tcp}">${chips(d.queries, undefined, 2)}</td>` +
      `<td class="fill" title="${esc(Object.entries(d.responses || {}).filter(([, v]) => v > 0).map(([k, v]) => k + ' ' + v).join(', '))}">` +
      `${chips(d.responses, rcodeClass)}</td>` +
      `<td class="num${d.rrl_dropped ? ' warn' : ''}" data-rrl-dropped="${d.rrl_dropped}">${d.rrl_dropped}/${d.rrl_slipped}</td>` +
      `<td class="num"><span class="${d.malformed ? 'badc' : ''}">${d.malformed}</span>/${d.truncated}</td></tr>`;
  }).join('');
  return '<table><tr><th>PoP</th><th class="num" colspan="2">queries/s</th><th>by type</th><th>answers</th>' +
    '<th class="num" title="response-rate limiting: answers dropped / sent empty with TC">RRL</th>' +
    `<th class="num" title="packets that were not a query / UDP answers sent empty with TC because they were too big">malf./TC</th></tr>` +
    `${rows}</table>${steering(pops)}`;
}

// customRegions gathers each region's custom routing: from the region's
// own status, else (an edge's own page, a region not in the fleet) from
// the state a PoP holds of it.
function customRegions(m) {
  const out = [];
  for (const r of m.regions) {
    const c = r.status?.custom_routing;
    if (c) out.push({ name: r.name, node: r, subnets: (c.subnets || []).length, overrides: c.overrides || [], down: c.down || [],
      probed: c.probed || 0 });
  }
  for (const p of m.pops) {
    const c = p.status?.custom_routing;
    for (const r of c?.regions || []) {
      if (out.some((x) => x.name === r.name)) continue;
      out.push({ name: r.name, node: p, via: p.name, known: r.known, overrides: r.overrides || [], down: r.down || [],
        subnets: (c.subnets || []).filter((s) => s.region === r.name).length });
    }
  }
  return out;
}

// downList shows a region's down destinations, a few at most.
function downList(down) {
  if (!down.length) return '<span class="muted">none</span>';
  const shown = 3;
  const item = (d) => {
    const why = d.probe ? 'probe failing' + (d.reason ? ': ' + d.reason : '') : d.reason || 'dial failed';
    const title = why + (d.until ? ', refused until ' + clock(d.until) : '');
    const since = d.since ? 'down ' + dur((Date.now() - Date.parse(d.since)) / 1000) + ':' : '';
    return `<div class="down" data-destination="${esc(d.destination)}" data-subnet="${esc(d.subnet)}" title="${esc(title)}">` +
      `<span class="badc">▼ ${esc(d.destination)}</span> <span class="muted">${since}</span> ${esc(why)} <span class="muted">· ${esc(d.subnet)}</span></div>`;
  };
  const more = down.length - shown;
  return down.slice(0, shown).map(item).join('') + (more > 0
    ? `<div class="muted" title="${esc(down.slice(shown).map((d) => d.destination).join(' '))}">+${more} more</div>` : '');
}

function renderCustom(m) {
  const rows = customRegions(m).map((c) => {
    const allows = c.overrides.filter((o) => o.allow).length;
    const via = c.via ? ` <span class="muted" title="as ${esc(c.via)} holds it">via ${esc(c.via)}</span>` : '';
    const unknown = c.known === false ? ' <span class="badge">not heard yet</span>' : '';
    const probed = c.probed === undefined ? '' : ` data-probed="${c.probed}" title="${c.probed} destinations allowed one by one are probed"`;
    return `<tr data-region="${esc(c.name)}" data-custom-down="${c.down.length}" class="${c.node.ok ? '' : 'stale'}"${probed}>` +
      `<th>${c.via ? '' : nodeDot(c.node)}${esc(c.name)}${via}${unknown}</th><td class="num">${c.subnets}</td>` +
      `<td class="num" data-allows="${allows}">${allows}</td><td class="num">${c.overrides.length - allows}</td>` +
      `<td class="fill">${downList(c.down)}</td></tr>`;
  }).join('');
  if (!rows) return '';
  return '<table><tr><th>region</th><th class="num">subnets</th>' +
    '<th class="num" title="run-time allows in force (anyedge ctl allow)">allows</th>' +
    '<th class="num" title="run-time denies in force (anyedge ctl deny)">denies</th>' +
    `<th>down destinations: refused at once</th></tr>${rows}</table>`;
}

function render() {
  if (!view) return;
  const m = model();
  renderSummary(m);
  for (const [id, html] of [['matrix', renderMatrix(m)], ['pops', renderPoPs(m)],
    ['listeners', renderListeners(m)], ['endpoints', renderEndpoints(m)], ['dns', renderDNS(m)], ['custom', renderCustom(m)]]) {
    $(id).innerHTML = html;
    $(id + '-panel').classList.toggle('empty', !html);
  }
  // DNS and custom routing sit beside the listeners, only in fleets that
  // have them.
  $('side').classList.toggle('empty', $('dns-panel').classList.contains('empty') && $('custom-panel').classList.contains('empty'));
}

// liveness shows how old the latest event is.
function liveness() {
  const el = $('live');
  const age = (Date.now() - lastEvent) / 1000;
  const fresh = lastEvent && age < 3 * ((view?.interval_ms || 1000) / 1000);
  el.className = 'live ' + (fresh ? 'ok' : 'bad');
  el.textContent = !lastEvent ? 'connecting…' : fresh ? 'live' : `no update for ${dur(age)}`;
}

const events = new EventSource('api/events');
events.addEventListener('nodes', (e) => { view = JSON.parse(e.data); lastEvent = Date.now(); render(); liveness(); });
events.addEventListener('history', (e) => { hist = JSON.parse(e.data); lastEvent = Date.now(); render(); });
setInterval(liveness, 500);
