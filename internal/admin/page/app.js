// The status page: fetches the admin API every 2 s and redraws. Data only
// ever reaches the DOM as text (textContent, SVG attributes), never as
// markup.
'use strict';

(() => {
  const REFRESH_MS = 2000;
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const $ = (id) => document.getElementById(id);

  let timer = null;
  let lastOK = null;        // when the API last answered
  let downSince = null;     // when it stopped answering
  let serverSkew = 0;       // server clock minus ours, from the Date header
  let last = null;          // {status, throughput} last received

  class AuthError extends Error {}
  class APIError extends Error {}

  // ---- fetching

  async function getJSON(path) {
    const r = await fetch(path, {credentials: 'same-origin', cache: 'no-store', headers: {Accept: 'application/json'}});
    if (r.status === 401) throw new AuthError('signed out');
    if (!r.ok) {
      let msg = r.status + ' ' + r.statusText;
      try { msg = (await r.json()).error || msg; } catch (_) { /* not JSON */ }
      throw new APIError(msg);
    }
    const date = Date.parse(r.headers.get('Date') || '');
    if (!Number.isNaN(date)) serverSkew = date - Date.now();
    return r.json();
  }

  async function refresh() {
    clearTimeout(timer);
    try {
      const [status, throughput] = await Promise.all([getJSON('/api/v1/status'), getJSON('/api/v1/throughput')]);
      last = {status, throughput};
      lastOK = new Date();
      downSince = null;
      show('dash');
      render();
      setConn('ok', 'live', 'Last update ' + clock(lastOK));
      hideBanner();
    } catch (e) {
      if (e instanceof AuthError) {
        show('login');
        setConn('wait', 'signed out', '');
        hideBanner();
      } else {
        unreachable(e);
      }
    } finally {
      // Another refresh (a login, say) may have run meanwhile and set its
      // own timer: one poll loop only.
      clearTimeout(timer);
      timer = setTimeout(refresh, REFRESH_MS);
    }
  }

  function unreachable(e) {
    if (downSince === null) downSince = new Date();
    const api = e instanceof APIError;
    setConn('down', api ? 'error' : 'unreachable', String(e.message || e));
    let msg = api
      ? 'The admin API answered with an error: ' + e.message + '.'
      : 'Cannot reach tunnel-server since ' + clock(downSince) + '.';
    msg += ' Retrying every ' + REFRESH_MS / 1000 + ' s.';
    if (lastOK) msg += ' Showing the data of ' + clock(lastOK) + '.';
    const b = $('banner');
    b.textContent = msg;
    b.hidden = false;
    document.body.classList.toggle('stale', lastOK !== null);
  }

  function hideBanner() {
    $('banner').hidden = true;
    document.body.classList.remove('stale');
  }

  let view = '';

  function show(which) {
    if (which === view) return;
    view = which;
    $('dash').hidden = which !== 'dash';
    $('login').hidden = which !== 'login';
    $('logout').hidden = which !== 'dash';
    if (which === 'login') $('token').focus();
  }

  function setConn(kind, text, title) {
    const c = $('conn');
    c.className = 'conn conn-' + kind;
    c.textContent = text;
    c.title = title;
  }

  // ---- signing in and out

  $('login-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const err = $('login-error');
    err.hidden = true;
    try {
      const r = await fetch('/ui/login', {
        method: 'POST',
        credentials: 'same-origin',
        body: new URLSearchParams({token: $('token').value}),
      });
      if (!r.ok) {
        let msg = 'Sign-in failed (' + r.status + ').';
        try { msg = (await r.json()).error || msg; } catch (_) { /* not JSON */ }
        throw new Error(msg);
      }
      $('token').value = '';
      refresh();
    } catch (e) {
      err.textContent = String(e.message || e);
      err.hidden = false;
      $('token').select();
    }
  });

  $('logout').addEventListener('click', async () => {
    try { await fetch('/ui/logout', {method: 'POST', credentials: 'same-origin'}); } catch (_) { /* shown by refresh */ }
    last = null;
    refresh();
  });

  $('chart-route').addEventListener('change', () => { if (last) drawChart(last.throughput); });
  window.addEventListener('resize', () => { if (last) drawChart(last.throughput); });

  // ---- rendering

  function render() {
    const st = last.status;
    const agents = st.agents || [], routes = st.routes || [], sessions = st.sessions || [];
    const online = agents.filter((a) => a.online).length;
    const listening = routes.filter((r) => r.listening).length;

    $('server-info').textContent = [
      st.version ? 'version ' + st.version : '',
      'up ' + duration(now() - Date.parse(st.started)),
      'agents connect to ' + st.listen,
    ].filter(Boolean).join(' · ');
    document.title = 'tunnel-server · ' + online + '/' + agents.length + ' agents online';

    $('t-agents').textContent = online + ' / ' + agents.length;
    $('t-routes').textContent = listening + ' / ' + routes.length;
    $('t-sessions').textContent = String(sessions.length);
    const rate = latestRate(last.throughput, '');
    $('t-up').textContent = rate ? fmtRate(rate.up) : '–';
    $('t-down').textContent = rate ? fmtRate(rate.down) : '–';

    renderAgents(agents);
    renderRoutes(routes);
    renderSessions(sessions);
    updateRouteChoice(routes);
    drawChart(last.throughput);
    $('updated').textContent = 'Last update ' + clock(lastOK) + '.';
  }

  function renderAgents(agents) {
    $('agents-count').textContent = count(agents.length, 'registered');
    fillTable('agents', agents, 'No agents registered. Add one with: tunnel-server agent add NAME --token', (a) => {
      let state;
      if (a.disabled) state = badge('disabled', 'warn');
      else if (a.online) state = badge('online', 'ok');
      else if (a.waiting_for_enrollment) state = badge('waiting for enrollment', 'off');
      else state = badge('offline', 'off');
      const transport = a.online ? text(a.transport || '', a.fallback ? 'on TLS because: ' + a.fallback : '') : dash();
      return [
        strong(a.name),
        state,
        a.online && a.since ? text(ago(a.since), new Date(a.since).toLocaleString()) : dash(),
        transport,
        a.online && a.rtt_ms ? text(fmtMillis(a.rtt_ms)) : dash(),
        a.online && a.version ? text(a.version) : dash(),
        text(String(a.sessions || 0)),
        a.online ? mono(a.remote || '') : dash(),
      ];
    });
  }

  function renderRoutes(routes) {
    $('routes-count').textContent = count(routes.length, 'configured');
    fillTable('routes', routes, 'No routes. Add one with: tunnel-server route add NAME --agent A --target T --listen ADDR', (r) => {
      let state;
      if (r.listening) state = badge('listening', 'ok');
      else state = badge('not listening', 'bad', r.error || '');
      const proto = r.protocol + (r.default ? '' : ' (by name)');
      return [
        strong(r.name),
        text(r.agent + ' → ' + r.target),
        mono(r.listen),
        text(proto),
        r.error ? withNote(state, r.error) : state,
        text(String(r.sessions || 0)),
        text(fmtBytes(r.bytes_up)),
        text(fmtBytes(r.bytes_down)),
      ];
    });
  }

  function renderSessions(sessions) {
    $('sessions-count').textContent = count(sessions.length, 'open');
    fillTable('sessions', sessions, 'No live sessions.', (s) => [
      mono(s.id),
      strong(s.route),
      text(s.agent + ' → ' + s.target),
      mono(s.client),
      text(ago(s.started), new Date(s.started).toLocaleString()),
      text(fmtBytes(s.bytes_up)),
      text(fmtBytes(s.bytes_down)),
    ]);
  }

  // fillTable replaces a table's rows; cells returns one node per column.
  function fillTable(id, items, empty, cells) {
    const table = $(id);
    const body = table.tBodies[0];
    const cols = table.tHead.rows[0].cells;
    const rows = items.map((item) => {
      const tr = document.createElement('tr');
      cells(item).forEach((node, i) => {
        const td = document.createElement('td');
        if (cols[i] && cols[i].classList.contains('num')) td.className = 'num';
        td.append(node);
        tr.append(td);
      });
      return tr;
    });
    if (rows.length === 0) {
      const tr = document.createElement('tr');
      const td = document.createElement('td');
      td.colSpan = cols.length;
      td.className = 'empty';
      td.textContent = empty;
      tr.append(td);
      rows.push(tr);
    }
    body.replaceChildren(...rows);
  }

  function updateRouteChoice(routes) {
    const sel = $('chart-route');
    const want = [''].concat(routes.map((r) => r.name).sort());
    const have = Array.from(sel.options, (o) => o.value);
    if (want.join('\n') === have.join('\n')) return;
    const cur = sel.value;
    sel.replaceChildren(...want.map((name) => {
      const o = document.createElement('option');
      o.value = name;
      o.textContent = name === '' ? 'all routes' : name;
      return o;
    }));
    sel.value = want.includes(cur) ? cur : '';
  }

  // ---- the chart

  // rates returns a sample's rates in bytes per second, for all routes
  // (route '') or one.
  function rates(s, route) {
    let up = s.bytes_up, down = s.bytes_down;
    if (route) {
      const r = (s.routes || {})[route] || {bytes_up: 0, bytes_down: 0};
      up = r.bytes_up;
      down = r.bytes_down;
    }
    const secs = s.seconds > 0 ? s.seconds : 1;
    return {t: Date.parse(s.time), up: up / secs, down: down / secs};
  }

  function latestRate(tp, route) {
    const s = tp.samples || [];
    return s.length ? rates(s[s.length - 1], route) : null;
  }

  function drawChart(tp) {
    const svg = $('chart');
    const box = $('chart-box');
    const route = $('chart-route').value;
    const W = Math.max(300, Math.floor(box.clientWidth));
    const H = 220;
    const pad = {l: 78, r: 14, t: 12, b: 26};
    const iw = W - pad.l - pad.r, ih = H - pad.t - pad.b;
    svg.setAttribute('width', W);
    svg.setAttribute('height', H);
    svg.setAttribute('viewBox', '0 0 ' + W + ' ' + H);

    // The time axis spans the samples kept, from twelve intervals up to
    // the whole window, so a young server's chart is not a sliver at the
    // edge.
    const windowMs = (tp.window_seconds || 600) * 1000;
    const intervalMs = (tp.interval_seconds || 5) * 1000;
    const end = now();
    const all = (tp.samples || []).map((s) => rates(s, route));
    const oldest = all.length ? all[0].t - intervalMs : end;
    const rawSpan = Math.min(windowMs, Math.max(12 * intervalMs, end - oldest));
    const tickMs = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600].map((s) => s * 1000).find((t) => rawSpan / t <= 6) || 600000;
    const spanMs = Math.min(windowMs, Math.ceil(rawSpan / tickMs) * tickMs);
    const start = end - spanMs;
    const pts = all.filter((p) => p.t >= start);
    const peak = pts.reduce((m, p) => Math.max(m, p.up, p.down), 0);
    const scale = niceScale(peak);
    const x = (t) => pad.l + Math.max(0, Math.min(1, (t - start) / spanMs)) * iw;
    const y = (v) => pad.t + ih - (v / scale.max) * ih;

    const nodes = [];
    // Grid and labels.
    for (let i = 0; i <= scale.steps; i++) {
      const v = scale.step * i;
      const yy = y(v);
      nodes.push(svgEl('line', {x1: pad.l, x2: W - pad.r, y1: yy, y2: yy, class: i === 0 ? 'axis' : 'grid'}));
      nodes.push(svgEl('text', {x: pad.l - 8, y: yy + 4, class: 'label', 'text-anchor': 'end'}, fmtRate(v, scale)));
    }
    for (let ago = spanMs; ago >= 0; ago -= tickMs) {
      const xx = x(end - ago);
      nodes.push(svgEl('line', {x1: xx, x2: xx, y1: pad.t + ih, y2: pad.t + ih + 4, class: 'axis'}));
      const anchor = ago === 0 ? 'end' : (ago === spanMs ? 'start' : 'middle');
      const label = ago === 0 ? 'now' : (ago % 60000 === 0 ? '−' + ago / 60000 + ' min' : '−' + ago / 1000 + ' s');
      nodes.push(svgEl('text', {x: xx, y: H - 6, class: 'label', 'text-anchor': anchor}, label));
    }
    if (pts.length > 0) {
      const line = (key) => pts.map((p, i) => (i ? 'L' : 'M') + x(p.t).toFixed(1) + ',' + y(p[key]).toFixed(1)).join('');
      const base = y(0).toFixed(1);
      const area = line('down') + 'L' + x(pts[pts.length - 1].t).toFixed(1) + ',' + base + 'L' + x(pts[0].t).toFixed(1) + ',' + base + 'Z';
      nodes.push(svgEl('path', {d: area, class: 'area-down'}));
      nodes.push(svgEl('path', {d: line('down'), class: 'line-down'}));
      nodes.push(svgEl('path', {d: line('up'), class: 'line-up'}));
      const lastPt = pts[pts.length - 1];
      nodes.push(svgEl('circle', {cx: x(lastPt.t), cy: y(lastPt.down), r: 3, class: 'dot-down'}));
      nodes.push(svgEl('circle', {cx: x(lastPt.t), cy: y(lastPt.up), r: 3, class: 'dot-up'}));
    }
    svg.replaceChildren(...nodes);
    svg.setAttribute('data-samples', String(pts.length));

    const empty = $('chart-empty');
    if (pts.length === 0) {
      empty.textContent = 'No samples yet: the server samples every ' + (tp.interval_seconds || 5) + ' s.';
      empty.hidden = false;
    } else {
      empty.hidden = true;
    }
  }

  // niceScale picks an axis top and step in the unit peak is best read in.
  function niceScale(peak) {
    const unit = rateUnit(peak);
    const inUnit = Math.max(peak / unit.div, 1e-9);
    const raw = inUnit / 4;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((f) => f * mag).find((s) => s >= raw) || 10 * mag;
    const steps = Math.max(1, Math.ceil(inUnit / step));
    if (peak === 0) return {max: 4 * 1024, step: 1024, steps: 4, unit: rateUnit(1024)};
    return {max: step * steps * unit.div, step: step * unit.div, steps, unit};
  }

  function svgEl(tag, attrs, content) {
    const el = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    if (content !== undefined) el.textContent = content;
    return el;
  }

  // ---- cells

  function text(s, title) {
    const span = document.createElement('span');
    span.textContent = s;
    if (title) span.title = title;
    return span;
  }
  function strong(s) { const b = document.createElement('strong'); b.textContent = s; return b; }
  function mono(s) { const c = document.createElement('code'); c.textContent = s; return c; }
  function dash() { const s = text('–'); s.className = 'muted'; return s; }
  function badge(s, kind, title) {
    const b = text(s, title);
    b.className = 'badge badge-' + kind;
    return b;
  }
  function withNote(node, note) {
    const wrap = document.createElement('span');
    const n = text(note);
    n.className = 'note';
    wrap.append(node, n);
    return wrap;
  }
  function count(n, what) { return n + ' ' + what; }

  // ---- formatting

  function now() { return Date.now() + serverSkew; }

  function clock(d) { return d.toLocaleTimeString(); }

  function ago(ts) { return duration(now() - Date.parse(ts)) + ' ago'; }

  function duration(ms) {
    let s = Math.max(0, Math.floor(ms / 1000));
    const d = Math.floor(s / 86400); s -= d * 86400;
    const h = Math.floor(s / 3600); s -= h * 3600;
    const m = Math.floor(s / 60); s -= m * 60;
    if (d) return d + 'd ' + h + 'h';
    if (h) return h + 'h ' + m + 'm';
    if (m) return m + 'm ' + s + 's';
    return s + 's';
  }

  function fmtMillis(ms) { return ms < 10 ? ms.toFixed(2) + ' ms' : ms.toFixed(0) + ' ms'; }

  const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

  function fmtBytes(n) {
    n = n || 0;
    let i = 0;
    while (n >= 1024 && i < UNITS.length - 1) { n /= 1024; i++; }
    return (i === 0 ? String(n) : n.toFixed(n < 10 ? 2 : 1)) + ' ' + UNITS[i];
  }

  function rateUnit(v) {
    let i = 0;
    while (v >= 1024 && i < UNITS.length - 1) { v /= 1024; i++; }
    return {div: Math.pow(1024, i), name: UNITS[i] + '/s'};
  }

  function fmtRate(v, scale) {
    const u = scale ? scale.unit : rateUnit(v);
    const x = v / u.div;
    const digits = x === 0 || x >= 100 || Number.isInteger(x) ? 0 : (x >= 10 ? 1 : 2);
    return x.toFixed(digits) + ' ' + u.name;
  }

  refresh();
})();
