/* learnhub admin console. Plain ES2020, no build step, CSP-safe (no inline code or style attributes). */
(function () {
  'use strict';

  const TOKEN_KEY = 'learnhub.token';
  const CACHE_POLL_MS = 1000;
  const DB_POLL_MS = 5000;
  const WINDOW_S = 300;

  const $ = (sel, root) => (root || document).querySelector(sel);

  /* ---------- small DOM helper (never innerHTML with data) ---------- */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v == null || v === false) continue;
        if (k === 'class') el.className = v;
        else if (k === 'text') el.textContent = v;
        else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
        else el.setAttribute(k, v === true ? '' : String(v));
      }
    }
    for (const c of children) {
      if (c == null || c === false) continue;
      el.append(c instanceof Node ? c : String(c));
    }
    return el;
  }

  /* ---------- formatting ---------- */
  const int = (v) => (typeof v === 'number' && isFinite(v) ? String(Math.round(v)) : '0');
  const fixed = (v, d) => (typeof v === 'number' && isFinite(v) ? v.toFixed(d) : '–');
  const pct = (ratio) => (typeof ratio === 'number' && isFinite(ratio) ? (ratio * 100).toFixed(1) : '–');
  function bytes(n) {
    if (typeof n !== 'number' || !isFinite(n)) return '';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    let v = n;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return '(' + (i === 0 ? String(v) : v.toFixed(1)) + ' ' + units[i] + ')';
  }
  function duration(s) {
    if (typeof s !== 'number' || !isFinite(s)) return '–';
    s = Math.floor(s);
    const d = Math.floor(s / 86400), hh = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
    if (d) return d + 'd ' + hh + 'h';
    if (hh) return hh + 'h ' + m + 'm';
    if (m) return m + 'm ' + (s % 60) + 's';
    return s + 's';
  }
  function when(iso) {
    if (!iso) return '–';
    const t = new Date(iso);
    return isNaN(t.getTime()) ? String(iso) : t.toLocaleString();
  }
  function setText(el, text) {
    if (el && el.textContent !== text) el.textContent = text;
  }

  /* ---------- token ---------- */
  function loadToken() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch (_) { return ''; }
  }
  function saveToken(t) {
    try { sessionStorage.setItem(TOKEN_KEY, t); } catch (_) { /* storage unavailable: keep in memory */ }
  }
  function clearToken() {
    try { sessionStorage.removeItem(TOKEN_KEY); } catch (_) { /* ignore */ }
  }
  let token = '';

  function b64urlJson(seg) {
    let s = seg.replace(/-/g, '+').replace(/_/g, '/');
    while (s.length % 4) s += '=';
    const bin = atob(s);
    const bytesArr = Uint8Array.from(bin, (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytesArr));
  }
  /** Returns [token, claims] or throws Error with a human message. */
  function parseToken(raw) {
    let t = (raw || '').trim();
    if (/^bearer\s+/i.test(t)) t = t.replace(/^bearer\s+/i, '').trim();
    if (!t) throw new Error('Paste a bearer token to sign in.');
    if (!/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(t)) {
      throw new Error('That does not look like a JWT: expected three base64url parts separated by dots.');
    }
    let claims;
    try {
      b64urlJson(t.split('.')[0]);
      claims = b64urlJson(t.split('.')[1]);
    } catch (_) {
      throw new Error('That token is malformed: its header or payload is not base64url-encoded JSON.');
    }
    if (!claims || typeof claims !== 'object') throw new Error('That token is malformed: its payload is not a JSON object.');
    return [t, claims];
  }

  /* ---------- API ---------- */
  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
    get auth() { return this.status === 401 || this.status === 403; }
  }

  async function api(method, path, body) {
    const headers = { Accept: 'application/json' };
    if (token) headers.Authorization = 'Bearer ' + token;
    const init = { method, headers, credentials: 'omit', cache: 'no-store', redirect: 'error' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, 'network', 'Cannot reach the gateway (' + (e && e.message ? e.message : 'network error') + ').');
    }
    const text = await res.text().catch(() => '');
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch (_) { data = null; }
    }
    if (!res.ok) {
      const msg = data && typeof data.message === 'string' && data.message
        ? data.message
        : 'The server answered HTTP ' + res.status + (res.statusText ? ' ' + res.statusText : '') + '.';
      const err = new ApiError(res.status, data && data.code ? String(data.code) : 'http_' + res.status, msg);
      if (err.auth && token) showAdminsOnly(err);
      throw err;
    }
    if (data === null && text) throw new ApiError(res.status, 'bad_json', 'The server sent a response that is not JSON.');
    return data;
  }

  /* ---------- general status line ---------- */
  const statusErrors = new Map();
  function setStatus(source, message) {
    if (message) statusErrors.set(source, message);
    else statusErrors.delete(source);
    const el = $('#status');
    const text = [...statusErrors.values()].join(' ');
    setText(el, text);
    el.hidden = !text;
  }
  function reportGeneral(source, err) {
    if (err instanceof ApiError && err.auth) return; // handled by the admins-only screen
    const what = { cache: 'Cache statistics', db: 'Database statistics', drafts: 'Draft courses' }[source] || source;
    setStatus(source, what + ': ' + (err && err.message ? err.message : String(err)));
  }

  /* ---------- screens ---------- */
  let signedIn = false;
  let cacheTimer = 0;
  let dbTimer = 0;

  function showScreen(which) {
    $('#sign-in').hidden = which !== 'sign-in';
    $('#admins-only').hidden = which !== 'admins-only';
    $('#console').hidden = which !== 'console';
    $('#who').hidden = which !== 'console';
  }

  function stopPolling() {
    clearInterval(cacheTimer);
    clearInterval(dbTimer);
    cacheTimer = 0;
    dbTimer = 0;
  }

  function showAdminsOnly(err) {
    signedIn = false;
    stopPolling();
    const dialog = $('#confirm');
    if (dialog.open) dialog.close();
    setText($('#admins-only-detail'), err && err.status === 401
      ? 'The token was rejected (' + err.message + ').'
      : 'This token is valid but is not an admin\u2019s' + (err && err.message ? ' (' + err.message + ').' : '.'));
    statusErrors.clear();
    setStatus('x', '');
    showScreen('admins-only');
    $('#admins-only-back').focus();
  }

  function signOut() {
    signedIn = false;
    stopPolling();
    token = '';
    clearToken();
    resetChart();
    statusErrors.clear();
    setStatus('x', '');
    lastStats = null;
    $('#token').value = '';
    setText($('#sign-in-error'), '');
    for (const id of ['#invalidate-result', '#db-result', '#course-result']) setText($(id), '');
    showScreen('sign-in');
    $('#token').focus();
  }

  async function signIn(raw, fromStorage) {
    const errEl = $('#sign-in-error');
    let claims;
    try {
      [token, claims] = parseToken(raw);
    } catch (e) {
      token = '';
      if (fromStorage) { clearToken(); return; }
      setText(errEl, e.message);
      $('#token').focus();
      return;
    }
    setText(errEl, '');
    saveToken(token);
    const btn = $('#sign-in');
    btn.disabled = true;
    try {
      const stats = await api('GET', '/v1/admin/cache/stats');
      enterConsole(claims);
      renderCache(stats);
      recordSample(stats);
    } catch (e) {
      if (e instanceof ApiError && e.auth) return; // admins-only screen already shown
      // Not an auth failure (network, 5xx): the token may well be fine, open the console and say what failed.
      enterConsole(claims);
      reportGeneral('cache', e);
    } finally {
      btn.disabled = false;
    }
  }

  function enterConsole(claims) {
    signedIn = true;
    const name = claims && (claims.name || claims.email || claims.sub);
    setText($('#who-name'), name ? 'Signed in as ' + name : 'Signed in');
    showScreen('console');
    ensureChart();
    loadDb();
    loadDrafts();
    stopPolling();
    cacheTimer = setInterval(() => { if (!document.hidden) pollCache(); }, CACHE_POLL_MS);
    dbTimer = setInterval(() => { if (!document.hidden) loadDb(); }, DB_POLL_MS);
    $('#main').focus();
  }

  /* ---------- cache ---------- */
  let lastStats = null;
  let cacheInFlight = false;

  async function pollCache() {
    if (!signedIn || cacheInFlight) return;
    cacheInFlight = true;
    try {
      const stats = await api('GET', '/v1/admin/cache/stats');
      if (!signedIn) return;
      setStatus('cache', '');
      renderCache(stats);
      recordSample(stats);
    } catch (e) {
      if (signedIn) reportGeneral('cache', e);
    } finally {
      cacheInFlight = false;
    }
  }

  const NS_FIELDS = ['hits', 'misses', 'hit_rate', 'sets', 'sets_refused', 'deletes', 'invalidations', 'entries_removed', 'errors'];

  function renderCache(s) {
    if (!s || typeof s !== 'object') return;
    lastStats = s;
    const t = s.total || {};
    setText($('#cache-store'), String(s.store == null ? '–' : s.store));
    setText($('#cache-connected'), s.redis_connected ? 'Redis connected' : (s.store === 'redis' ? 'Redis NOT connected' : 'no Redis connection'));
    setText($('#cache-uptime'), duration(s.uptime_seconds));
    setText($('#cache-hits'), int(t.hits));
    setText($('#cache-misses'), int(t.misses));
    setText($('#cache-hit-rate'), pct(t.hit_rate));
    $('#cache-hit-rate').setAttribute('data-value', typeof t.hit_rate === 'number' ? String(t.hit_rate) : '');
    setText($('#cache-sets'), int(t.sets));
    setText($('#cache-invalidations'), int(t.invalidations));
    setText($('#cache-removed'), int(t.entries_removed));
    setText($('#cache-errors'), int(t.errors));
    setText($('#cache-keys'), int(s.key_count));
    setText($('#cache-memory'), int(s.redis_used_memory_bytes));
    setText($('#cache-memory-human'), bytes(s.redis_used_memory_bytes));
    setText($('#cache-latency'), fixed(s.redis_latency_p50_ms, 2) + ' / ' + fixed(s.redis_latency_p99_ms, 2));

    renderNear(Array.isArray(s.near_caches) ? s.near_caches[0] : null);

    const tbody = $('#namespaces tbody');
    const ns = s.namespaces && typeof s.namespaces === 'object' ? s.namespaces : {};
    const names = Object.keys(ns).sort();
    const keep = new Set(names);
    for (const tr of [...tbody.querySelectorAll('tr')]) {
      if (!keep.has(tr.getAttribute('data-namespace'))) tr.remove();
    }
    if (!names.length) {
      tbody.append(h('tr', { 'data-empty': '' }, h('td', { class: 'empty', colspan: 10, text: 'No namespaces recorded yet.' })));
      return;
    }
    names.forEach((name, i) => {
      let tr = [...tbody.children].find((r) => r.getAttribute('data-namespace') === name);
      if (!tr) {
        tr = h('tr', { 'data-namespace': name }, h('th', { scope: 'row', text: name }),
          ...NS_FIELDS.map((f) => h('td', { class: 'num', 'data-field': f })));
      }
      if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] || null);
      const c = ns[name] || {};
      for (const f of NS_FIELDS) {
        const td = tr.querySelector('[data-field="' + f + '"]');
        if (f === 'hit_rate') {
          setText(td, pct(c.hit_rate));
          td.setAttribute('data-value', typeof c.hit_rate === 'number' ? String(c.hit_rate) : '');
        } else {
          setText(td, int(c[f]));
        }
      }
    });
  }

  const NEAR_FIELDS = ['hits', 'misses', 'hit_rate'];

  // The gateway's own near-cache: absent when it keeps none (no cache-svc, or turned off).
  function renderNear(near) {
    const tbody = $('#near tbody');
    if (!near || typeof near !== 'object') {
      setText($('#near-live'), 'none');
      setText($('#near-entries'), '–');
      setText($('#near-pushed'), '–');
      setText($('#near-drops'), '–');
      tbody.replaceChildren(h('tr', { 'data-empty': '' }, h('td', { class: 'empty', colspan: 4, text: 'No near-cache.' })));
      return;
    }
    setText($('#near-live'), near.live ? 'live' : 'down (every read goes to cache-svc)');
    setText($('#near-entries'), int(near.entries));
    setText($('#near-pushed'), int(near.pushed));
    setText($('#near-drops'), int(near.drops));
    const ns = near.namespaces && typeof near.namespaces === 'object' ? near.namespaces : {};
    const names = Object.keys(ns).sort();
    for (const tr of [...tbody.querySelectorAll('tr')]) {
      if (!names.includes(tr.getAttribute('data-namespace'))) tr.remove();
    }
    names.forEach((name, i) => {
      let tr = [...tbody.children].find((r) => r.getAttribute('data-namespace') === name);
      if (!tr) {
        tr = h('tr', { 'data-namespace': name }, h('th', { scope: 'row', text: name }),
          ...NEAR_FIELDS.map((f) => h('td', { class: 'num', 'data-field': f })));
      }
      if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] || null);
      const c = ns[name] || {};
      setText(tr.querySelector('[data-field="hits"]'), int(c.hits));
      setText(tr.querySelector('[data-field="misses"]'), int(c.misses));
      setText(tr.querySelector('[data-field="hit_rate"]'), pct(c.hit_rate));
    });
  }

  /* ---------- live chart ---------- */
  let chart = null;
  let resizeObs = null;
  let prev = null; // { t (s), hits, misses, sets }
  const series = { t: [], rate: [], ops: [] };

  function resetChart() {
    prev = null;
    series.t.length = 0;
    series.rate.length = 0;
    series.ops.length = 0;
    if (chart) chart.setData([[], [], []]);
    setText($('#live-hit-rate'), '–');
    setText($('#live-ops'), '–');
  }

  function recordSample(s) {
    const tot = s && s.total;
    if (!tot) return;
    const now = Date.now() / 1000;
    const cur = { t: now, hits: +tot.hits || 0, misses: +tot.misses || 0, sets: +tot.sets || 0 };
    if (prev) {
      const dt = cur.t - prev.t;
      const dh = cur.hits - prev.hits, dm = cur.misses - prev.misses, ds = cur.sets - prev.sets;
      if (dt > 0 && dh >= 0 && dm >= 0 && ds >= 0) {
        const lookups = dh + dm;
        const rate = lookups > 0 ? (dh / lookups) * 100 : null;
        const ops = (lookups + ds) / dt;
        series.t.push(cur.t);
        series.rate.push(rate);
        series.ops.push(ops);
        setText($('#live-hit-rate'), rate == null ? 'n/a (no lookups)' : rate.toFixed(1) + ' %');
        setText($('#live-ops'), ops.toFixed(1));
      }
      // counters going backwards = the cache service restarted: start a fresh baseline.
    }
    prev = cur;
    while (series.t.length && series.t[0] < now - WINDOW_S) {
      series.t.shift();
      series.rate.shift();
      series.ops.shift();
    }
    if (chart) chart.setData([series.t, series.rate, series.ops]);
  }

  function chartSize(el) {
    const w = Math.max(240, Math.floor(el.clientWidth || 600));
    return { width: w, height: w < 420 ? 200 : 260 };
  }

  function ensureChart() {
    const el = $('#cache-chart');
    if (chart || typeof window.uPlot !== 'function' || el.clientWidth === 0) {
      if (typeof window.uPlot !== 'function') setText(el, 'The chart library did not load; the numbers above still update.');
      return;
    }
    const size = chartSize(el);
    const axisStroke = '#16191d';
    const gridStroke = '#dde1e6';
    chart = new window.uPlot({
      width: size.width,
      height: size.height,
      cursor: { drag: { x: false, y: false } },
      scales: {
        // Always the last WINDOW_S seconds up to now: with one sample uPlot would otherwise
        // spread its own range over years.
        x: {
          time: true,
          auto: false,
          range: () => {
            const end = Date.now() / 1000;
            return [end - WINDOW_S, end];
          },
        },
        pct: { auto: false, range: [0, 100] },
        ops: { range: (u, min, max) => [0, Math.max(1, (max || 0) * 1.1)] },
      },
      series: [
        { label: 'Time' },
        {
          label: 'Hit rate (%)', scale: 'pct', stroke: '#1b5e34', width: 2, spanGaps: false,
          value: (u, v) => (v == null ? '–' : v.toFixed(1) + ' %'),
        },
        {
          label: 'Operations/s', scale: 'ops', stroke: '#1d4fa3', width: 2, dash: [6, 3],
          value: (u, v) => (v == null ? '–' : v.toFixed(1)),
        },
      ],
      axes: [
        { stroke: axisStroke, grid: { stroke: gridStroke } },
        { scale: 'pct', label: 'Hit rate %', stroke: axisStroke, grid: { stroke: gridStroke }, values: (u, vals) => vals.map((v) => v + '%') },
        { scale: 'ops', side: 1, label: 'ops/s', stroke: axisStroke, grid: { show: false } },
      ],
    }, [series.t, series.rate, series.ops], el);

    if (typeof ResizeObserver === 'function') {
      resizeObs = new ResizeObserver(() => {
        if (!chart || el.clientWidth === 0) return;
        const s = chartSize(el);
        if (s.width !== chart.width || s.height !== chart.height) chart.setSize(s);
      });
      resizeObs.observe(el);
    }
  }

  /* ---------- invalidate ---------- */
  function describePattern(pattern) {
    const i = pattern.indexOf(':');
    const nsName = i >= 0 ? pattern.slice(0, i) : pattern;
    const ns = lastStats && lastStats.namespaces ? lastStats.namespaces : {};
    const hasGlob = /[*?[]/.test(nsName);
    if (!hasGlob && Object.prototype.hasOwnProperty.call(ns, nsName)) {
      const c = ns[nsName] || {};
      return 'It touches the namespace ' + nsName + ': ' + int(c.sets) + ' sets, ' + int(c.hits) + ' hits recorded (' +
        int(c.misses) + ' misses, ' + int(c.entries_removed) + ' entries removed so far).';
    }
    if (hasGlob) {
      const t = (lastStats && lastStats.total) || {};
      return 'Its namespace part \u201c' + nsName + '\u201d is a wildcard, so it may touch every namespace (' +
        Object.keys(ns).sort().join(', ') + '); all namespaces: ' + int(t.sets) + ' sets, ' + int(t.hits) + ' hits recorded.';
    }
    return 'It touches the namespace ' + nsName + ': 0 sets, 0 hits recorded (no counters for this namespace yet).';
  }

  let pendingPattern = '';

  function askInvalidate() {
    const pattern = $('#pattern').value.trim();
    const res = $('#invalidate-result');
    if (!pattern) {
      res.className = 'result fail';
      setText(res, 'Enter a key pattern such as catalog:* first.');
      $('#pattern').focus();
      return;
    }
    pendingPattern = pattern;
    const text = $('#confirm-text');
    text.textContent = '';
    text.append('Delete every cache entry whose key matches ', h('code', { text: pattern }), '? ', describePattern(pattern));
    const dialog = $('#confirm');
    if (typeof dialog.showModal === 'function') {
      if (!dialog.open) dialog.showModal();
    } else {
      dialog.setAttribute('open', '');
    }
    $('#confirm-no').focus();
  }

  function closeConfirm() {
    const dialog = $('#confirm');
    if (typeof dialog.close === 'function') { if (dialog.open) dialog.close(); } else dialog.removeAttribute('open');
    $('#invalidate').focus();
  }

  async function doInvalidate() {
    const pattern = pendingPattern;
    closeConfirm();
    if (!pattern) return;
    const res = $('#invalidate-result');
    const btn = $('#invalidate');
    btn.disabled = true;
    res.className = 'result';
    setText(res, 'Invalidating\u2026');
    try {
      const out = await api('POST', '/v1/admin/cache/invalidate', { pattern });
      res.className = 'result ok';
      res.textContent = '';
      res.append('Removed ', h('span', { id: 'invalidate-removed', text: int(out && out.removed) }),
        ' entries matching ', h('code', { text: (out && out.pattern) || pattern }));
      pollCache();
    } catch (e) {
      if (e instanceof ApiError && e.auth) return;
      res.className = 'result fail';
      setText(res, e.message);
    } finally {
      btn.disabled = false;
    }
  }

  /* ---------- database ---------- */
  let dbSeq = 0;

  async function loadDb() {
    if (!signedIn) return;
    const seq = ++dbSeq;
    try {
      const data = await api('GET', '/v1/admin/db/stats');
      if (seq !== dbSeq || !signedIn) return;
      setStatus('db', '');
      renderDbService('catalog', data ? data.catalog : null);
      renderDbService('enrollment', data ? data.enrollment : null);
    } catch (e) {
      if (seq === dbSeq && signedIn) reportGeneral('db', e);
    }
  }

  /** Fills a list with items only; the empty/summary text goes in a sibling <p class="note">. */
  function listItems(ul, items, noteText) {
    ul.textContent = '';
    ul.append(...items);
    ul.hidden = !items.length;
    let note = ul.nextElementSibling;
    if (!note || !note.classList.contains('note')) {
      note = h('p', { class: 'note' });
      ul.after(note);
    }
    setText(note, noteText || '');
    note.hidden = !noteText;
  }

  function renderDbService(name, st) {
    const sec = $('#db section[data-service="' + name + '"]');
    const totalsEl = $('#db-totals-' + name);
    const tbody = $('table.statements tbody', sec);
    const slowUl = $('.slow', sec);
    const npoUl = $('.n-plus-one', sec);
    if (!st) {
      setText(totalsEl, 'No statistics: the ' + name + ' service did not answer or does not record them.');
      tbody.textContent = '';
      tbody.append(h('tr', null, h('td', { class: 'empty', colspan: 5, text: 'No data.' })));
      setText($('.slow-total', sec), '');
      listItems(slowUl, [], 'No data.');
      listItems(npoUl, [], 'No data.');
      return;
    }
    const tot = st.totals || {};
    const th = st.thresholds || {};
    const slowMs = +th.slow_query_ms;
    const statements = Array.isArray(st.statements) ? st.statements : [];
    const rpcs = Array.isArray(st.rpcs) ? st.rpcs : [];

    setText(totalsEl,
      (st.service || name) + ' on ' + (st.backend || 'unknown backend') +
      ' since ' + when(st.since) + ': ' +
      int(tot.statements) + ' statements, ' + int(tot.errors) + ' errors, ' +
      int(tot.slow) + ' slow (over ' + (isFinite(slowMs) ? slowMs : '?') + ' ms), ' +
      int(tot.n_plus_one) + ' N+1 (' + int(th.n_plus_one) + '+ repeats), ' +
      int(tot.rpc_calls) + ' RPC calls.');

    tbody.textContent = '';
    if (!statements.length) {
      tbody.append(h('tr', null, h('td', { class: 'empty', colspan: 5, text: 'No statements recorded.' })));
    } else {
      for (const s of statements) {
        tbody.append(h('tr', null,
          h('td', { class: 'stmt', 'data-field': 'statement', text: String(s.statement) }),
          h('td', { class: 'num', 'data-field': 'count', text: int(s.count) }),
          h('td', { class: 'num', 'data-field': 'avg_ms', text: fixed(s.avg_ms, 2) }),
          h('td', { class: 'num', 'data-field': 'p99_ms', text: fixed(s.p99_ms, 2) }),
          h('td', { class: 'num', 'data-field': 'total_ms', text: fixed(s.total_ms, 2) })));
      }
    }

    const slow = isFinite(slowMs) ? statements.filter((s) => +s.max_ms > slowMs) : [];
    const slowTotal = $('.slow-total', sec);
    setText(slowTotal, 'Slow executions in total: ' + int(tot.slow) + ' (threshold ' + (isFinite(slowMs) ? slowMs : '?') + ' ms); ' +
      slow.length + ' statement' + (slow.length === 1 ? '' : 's') + ' with a maximum over it.');
    listItems(slowUl, slow.map((s) => h('li', { 'data-statement': String(s.statement) },
      h('code', { text: String(s.statement) }),
      ' \u2014 ' + int(s.count) + ' call' + (s.count === 1 ? '' : 's') + ', max ' + fixed(s.max_ms, 1) +
      ' ms, p99 ' + fixed(s.p99_ms, 1) + ' ms')), slow.length ? '' : 'No slow queries.');

    const findings = [];
    for (const r of rpcs) {
      for (const f of Array.isArray(r.n_plus_one_findings) ? r.n_plus_one_findings : []) {
        findings.push(h('li', { 'data-rpc': String(r.rpc) },
          h('strong', { text: String(r.rpc) }), ': ',
          h('code', { text: String(f.statement) }),
          ' repeated up to ' + int(f.max_repeats) + '\u00d7 in one call (' + int(f.calls) + ' call' + (f.calls === 1 ? '' : 's') +
          ' affected; RPC averages ' + fixed(r.avg_statements, 1) + ' statements)'));
      }
    }
    listItems(npoUl, findings, findings.length ? '' : 'No N+1 patterns found.');
  }

  async function resetDb() {
    const btn = $('#db-reset');
    const res = $('#db-result');
    btn.disabled = true;
    res.className = 'result';
    setText(res, 'Resetting\u2026');
    try {
      const out = await api('POST', '/v1/admin/db/stats/reset');
      const list = out && Array.isArray(out.reset) ? out.reset : [];
      res.className = 'result ok';
      setText(res, list.length ? 'Statistics reset for ' + list.join(', ') + '.' : 'No service statistics were reset.');
    } catch (e) {
      if (e instanceof ApiError && e.auth) return;
      res.className = 'result fail';
      setText(res, e.message);
    } finally {
      btn.disabled = false;
    }
    loadDb();
  }

  /* ---------- draft courses ---------- */
  let draftsSeq = 0;

  async function loadDrafts() {
    if (!signedIn) return;
    const seq = ++draftsSeq;
    const tbody = $('#drafts tbody');
    try {
      const data = await api('GET', '/v1/admin/courses?status=draft&page_size=100');
      if (seq !== draftsSeq || !signedIn) return;
      setStatus('drafts', '');
      const courses = data && Array.isArray(data.courses) ? data.courses : [];
      tbody.textContent = '';
      if (!courses.length) {
        tbody.append(h('tr', null, h('td', { class: 'empty', colspan: 6, text: 'No draft courses.' })));
      }
      for (const c of courses) {
        const title = String(c.title || c.slug || c.id);
        tbody.append(h('tr', { 'data-course-id': String(c.id) },
          h('td', { 'data-field': 'title', text: title }),
          h('td', { 'data-field': 'slug' }, h('code', { text: String(c.slug || '') })),
          h('td', { 'data-field': 'category', text: c.category ? String(c.category.name || c.category.slug || '') : '' }),
          h('td', { 'data-field': 'level', text: String(c.level || '') }),
          h('td', { 'data-field': 'updated_at', text: when(c.updated_at) }),
          h('td', { class: 'actions' },
            h('button', { type: 'button', class: 'small', 'data-action': 'publish', 'aria-label': 'Publish \u201c' + title + '\u201d', text: 'Publish' }),
            h('button', { type: 'button', class: 'small secondary', 'data-action': 'archive', 'aria-label': 'Archive \u201c' + title + '\u201d', text: 'Archive' }))));
      }
    } catch (e) {
      if (seq !== draftsSeq || !signedIn) return;
      reportGeneral('drafts', e);
      if (!(e instanceof ApiError && e.auth)) {
        tbody.textContent = '';
        tbody.append(h('tr', null, h('td', { class: 'empty', colspan: 6, text: 'Could not load draft courses: ' + e.message })));
      }
    }
  }

  async function courseAction(btn) {
    const tr = btn.closest('tr[data-course-id]');
    if (!tr) return;
    const id = tr.getAttribute('data-course-id');
    const action = btn.getAttribute('data-action');
    const title = $('[data-field="title"]', tr).textContent;
    const res = $('#course-result');
    for (const b of tr.querySelectorAll('button')) b.disabled = true;
    try {
      const course = await api('POST', '/v1/admin/courses/' + encodeURIComponent(id) + '/' + action);
      const t = (course && course.title) || title;
      res.className = 'result ok';
      res.title = '';
      setText(res, (action === 'publish' ? 'Published' : 'Archived') + ' \u201c' + t + '\u201d');
    } catch (e) {
      if (e instanceof ApiError && e.auth) return;
      res.className = 'result fail';
      setText(res, e.message);
      res.title = 'Could not ' + action + ' \u201c' + title + '\u201d';
    }
    await loadDrafts();
    res.focus();
  }

  /* ---------- wiring ---------- */
  function init() {
    // CSP form-action 'none' blocks form submission outright (no submit event), so buttons are type=button.
    $('#sign-in-form').addEventListener('submit', (ev) => ev.preventDefault());
    $('#sign-in').addEventListener('click', () => signIn($('#token').value, false));
    $('#token').addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) {
        ev.preventDefault();
        signIn($('#token').value, false);
      }
    });
    $('#sign-out').addEventListener('click', signOut);
    $('#admins-only-back').addEventListener('click', signOut);

    $('#invalidate').addEventListener('click', askInvalidate);
    $('#invalidate-form').addEventListener('submit', (ev) => ev.preventDefault());
    $('#pattern').addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter') { ev.preventDefault(); askInvalidate(); }
    });
    $('#confirm-yes').addEventListener('click', doInvalidate);
    $('#confirm-no').addEventListener('click', () => { pendingPattern = ''; closeConfirm(); });
    $('#confirm').addEventListener('cancel', () => { pendingPattern = ''; setTimeout(() => $('#invalidate').focus(), 0); });

    $('#db-reset').addEventListener('click', resetDb);
    $('#drafts-refresh').addEventListener('click', () => {
      setText($('#course-result'), '');
      loadDrafts();
    });
    $('#drafts').addEventListener('click', (ev) => {
      const btn = ev.target.closest('button[data-action]');
      if (btn && !btn.disabled) courseAction(btn);
    });

    document.addEventListener('visibilitychange', () => {
      if (!document.hidden && signedIn) {
        // The gap while hidden is averaged into one point; a fresh baseline keeps the rate honest.
        prev = null;
        pollCache();
        loadDb();
      }
    });

    const stored = loadToken();
    if (stored) {
      $('#token').value = stored;
      signIn(stored, true);
    } else {
      showScreen('sign-in');
      $('#token').focus();
    }
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
