// Starling web UI: one page, no build step. Talks to the node's /api/v1 with the
// session cookie; live updates arrive as server-sent events (/api/v1/events).
// Everything a user or the network wrote is inserted with textContent, never as HTML.
'use strict';

const MAX_CHARS = 280;
const $ = (id) => document.getElementById(id);

// ---- API ---------------------------------------------------------------------------

async function api(method, path, body) {
  const opts = { method, credentials: 'same-origin', headers: {} };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  const r = await fetch('/api/v1' + path, opts);
  let data = null;
  try { data = await r.json(); } catch (_) { /* empty body */ }
  if (!r.ok) {
    const e = new Error(data && data.error ? data.error.message : `HTTP ${r.status}`);
    e.status = r.status;
    e.code = data && data.error ? data.error.code : 'http';
    if (r.status === 401) { location.href = '/'; }
    throw e;
  }
  return data;
}

// ---- helpers -----------------------------------------------------------------------

const chars = (s) => [...s].length; // Unicode scalar values, as the node counts

function relative(ms) {
  const d = Date.now() - ms;
  const future = d < 0;
  const s = Math.floor(Math.abs(d) / 1000);
  if (!future && s < 5) return 'just now';
  let a;
  if (s < 60) a = `${s}s`;
  else if (s < 3600) a = `${Math.floor(s / 60)}m`;
  else if (s < 86400) a = `${Math.floor(s / 3600)}h`;
  else a = `${Math.floor(s / 86400)}d`;
  return future ? `in ${a}` : `${a} ago`;
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function who(p) {
  return p.handle ? '@' + p.handle : p.author.slice(0, 12) + '…';
}

const key = (p) => `${p.author}/${p.seq}`;

// Timeline order: (hlc, author, seq), newest first, as the node sorts.
function newer(a, b) {
  if (a.hlc !== b.hlc) return a.hlc > b.hlc;
  if (a.author !== b.author) return a.author > b.author;
  return a.seq > b.seq;
}

function renderPost(p, opts = {}) {
  const li = el('li', 'post' + (p.mine ? ' mine' : ''));
  li.dataset.key = key(p);
  li.dataset.expires = p.expires_at;
  const meta = el('div', 'meta');
  meta.append(el('span', 'who', who(p)), el('span', 'fp', p.fingerprint), el('span', 'seq', '#' + p.seq));
  const t = el('time', 'ts', relative(p.ts_ms));
  t.dataset.ts = p.ts_ms;
  t.title = new Date(p.ts_ms).toLocaleString();
  meta.append(t);
  if (p.repost_of) meta.append(el('span', 'repost', `↻ reposted #${p.repost_of.seq}`));
  if (opts.archive) meta.append(el('span', 'expired', `expired ${relative(p.expires_at)}`));
  li.append(meta, el('div', 'body', p.body));
  if (opts.archive) {
    const actions = el('div', 'actions');
    const b = el('button', 'secondary repost-button', 'Repost');
    b.dataset.seq = p.seq;
    b.addEventListener('click', () => repost(p.seq, b));
    actions.append(b);
    li.append(actions);
  }
  return li;
}

// ---- timeline ----------------------------------------------------------------------

const shown = new Map(); // key -> post, for ordering and de-duplication
let nextCursor = null;

function insertPost(p, fresh) {
  if (shown.has(key(p)) || p.expires_at <= Date.now()) return;
  shown.set(key(p), p);
  const li = renderPost(p);
  if (fresh) li.classList.add('new');
  const list = $('timeline');
  let before = null;
  for (const child of list.children) {
    if (newer(p, shown.get(child.dataset.key))) { before = child; break; }
  }
  list.insertBefore(li, before);
  $('timeline-empty').hidden = true;
}

async function loadTimeline(more) {
  const q = more && nextCursor ? `?limit=50&before=${encodeURIComponent(nextCursor)}` : '?limit=50';
  const page = await api('GET', '/timeline' + q);
  if (!more) { shown.clear(); $('timeline').replaceChildren(); }
  page.posts.forEach((p) => insertPost(p, false));
  nextCursor = page.next_cursor;
  $('timeline-more').hidden = !nextCursor;
  $('timeline-empty').hidden = shown.size > 0;
}

function tick() {
  const now = Date.now();
  for (const li of [...$('timeline').children]) {
    if (Number(li.dataset.expires) <= now) { shown.delete(li.dataset.key); li.remove(); }
  }
  document.querySelectorAll('time.ts').forEach((t) => { t.textContent = relative(Number(t.dataset.ts)); });
  $('timeline-empty').hidden = shown.size > 0;
}

// ---- compose -----------------------------------------------------------------------

function composeState() {
  const body = $('compose-body').value;
  const n = chars(body);
  const counter = $('counter');
  counter.textContent = `${n} / ${MAX_CHARS}`;
  counter.classList.toggle('near', n > MAX_CHARS - 20 && n <= MAX_CHARS);
  counter.classList.toggle('over', n > MAX_CHARS);
  const err = $('compose-error');
  if (n > MAX_CHARS) {
    err.textContent = `A post can have at most ${MAX_CHARS} characters; this one has ${n}.`;
  } else if (err.dataset.fromServer !== 'yes') {
    err.textContent = '';
  }
  $('compose-submit').disabled = body.trim() === '' || n > MAX_CHARS;
}

async function submitPost(ev) {
  ev.preventDefault();
  const box = $('compose-body');
  const err = $('compose-error');
  if (chars(box.value) > MAX_CHARS || box.value.trim() === '') { composeState(); return; }
  $('compose-submit').disabled = true;
  try {
    const p = await api('POST', '/posts', { body: box.value });
    box.value = '';
    err.textContent = '';
    err.dataset.fromServer = '';
    insertPost(p, true);
  } catch (e) {
    err.textContent = e.message;
    err.dataset.fromServer = 'yes';
  }
  composeState();
}

// ---- people ------------------------------------------------------------------------

function personRow(f, kind) {
  const li = el('li');
  li.dataset.peer = f.peer_id;
  const main = el('div', 'grow');
  main.append(el('strong', 'who', f.handle ? '@' + f.handle : 'unknown handle'), document.createTextNode(' '),
    el('span', 'fp', f.fingerprint), el('span', 'key', f.peer_id));
  li.append(main);
  li.append(el('span', 'since', 'since ' + relative(f.since_ms)));
  if (kind === 'following') {
    li.append(f.pending
      ? el('span', 'badge pending', 'pending')
      : el('span', 'badge ok', 'acknowledged'));
    const b = el('button', 'secondary unfollow-button', 'Unfollow');
    b.addEventListener('click', () => unfollow(f, b));
    li.append(b);
  }
  return li;
}

async function loadPeople() {
  const [following, followers] = await Promise.all([api('GET', '/following'), api('GET', '/followers')]);
  const fl = $('following');
  fl.replaceChildren(...following.map((f) => personRow(f, 'following')));
  if (!following.length) fl.append(el('li', 'hint', 'You follow nobody yet.'));
  const fr = $('followers');
  fr.replaceChildren(...followers.map((f) => personRow(f, 'followers')));
  if (!followers.length) fr.append(el('li', 'hint', 'Nobody follows you yet.'));
}

function say(id, text, ok) {
  const m = $(id);
  m.textContent = text;
  m.className = 'message ' + (ok ? 'ok' : 'bad');
}

async function follow(ev) {
  ev.preventDefault();
  const target = $('follow-target').value.trim();
  if (!target) return;
  try {
    const f = await api('POST', '/follow', { target });
    say('follow-message', `Following ${f.handle ? '@' + f.handle : f.peer_id}. They will be told as soon as they are reachable.`, true);
    $('follow-target').value = '';
  } catch (e) {
    say('follow-message', e.message, false);
  }
  loadPeople();
  loadTimeline(false);
}

async function unfollow(f, button) {
  button.disabled = true;
  try {
    await api('POST', '/unfollow', { target: f.peer_id });
    say('follow-message', `No longer following ${f.handle ? '@' + f.handle : f.peer_id}.`, true);
  } catch (e) {
    say('follow-message', e.message, false);
  }
  loadPeople();
  loadTimeline(false);
}

// ---- archive -----------------------------------------------------------------------

async function loadArchive() {
  const page = await api('GET', '/archive?limit=100');
  $('archive').replaceChildren(...page.posts.map((p) => renderPost(p, { archive: true })));
  $('archive-empty').hidden = page.posts.length > 0;
}

async function repost(seq, button) {
  button.disabled = true;
  try {
    const p = await api('POST', `/archive/${seq}/repost`);
    say('archive-message', `Reposted #${seq} as #${p.seq}.`, true);
    insertPost(p, true);
  } catch (e) {
    say('archive-message', e.message, false);
    button.disabled = false;
  }
}

// ---- status ------------------------------------------------------------------------

function handleState(s) {
  switch (s.state) {
    case 'registered': return 'registered';
    case 'pending': return `pending (${s.reason})`;
    case 'taken': return `taken by ${s.by}`;
    default: return s.state;
  }
}

// Followers refuse our posts as dated in the future: say so on every page.
function clockWarning(s) {
  const f = s.clock.future_refusals;
  const banner = $('clock-warning');
  banner.hidden = !f;
  if (f) {
    const who = f.peers === 1 ? 'A follower refuses' : `${f.peers} followers refuse`;
    banner.textContent = `${who} your posts as dated ${Math.round(f.ahead_ms / 1000)} s in the future: ` +
      "this computer's clock runs ahead. Correct it, or start the node with an SNTP server (--ntp-server pool.ntp.org:123).";
  }
}

async function checkClock() {
  try { clockWarning(await api('GET', '/status')); } catch (e) { console.error(e); }
}

async function loadStatus() {
  const s = await api('GET', '/status');
  clockWarning(s);
  const rows = [
    ['Handle', `@${s.handle} — ${handleState(s.handle_state)}`],
    ['Key', s.peer_id],
    ['Peers connected', s.network ? String(s.network.connected_peers) : 'network off'],
    ['Routing table', s.network ? String(s.network.routing_table_size) : '—'],
    ['Clock offset', `${s.clock.offset_ms.toFixed(1)} ms` + (s.clock.ntp.servers.length ? '' : ' (system clock; no SNTP server configured)')],
    ['Pending outbox', String(s.outbox_pending)],
    ['Following / followers', `${s.following} / ${s.followers}`],
    ['Posts stored', `${s.posts_stored} (${s.posts_live} live); your newest is #${s.head_seq}`],
    ['Rejected inputs', Object.entries(s.rejected).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'],
    ['Uptime', `${s.uptime_secs}s`],
    ['Version', s.version],
  ];
  if (s.network) s.network.listen_addrs.forEach((a) => rows.push(['Bootstrap address', a]));
  $('status').replaceChildren(...rows.flatMap(([k, v]) => {
    const dd = el('dd', null, v);
    dd.dataset.field = k;
    return [el('dt', null, k), dd];
  }));
}

// ---- navigation and live updates ---------------------------------------------------

const loaders = { timeline: () => loadTimeline(false), people: loadPeople, archive: loadArchive, status: loadStatus };
let current = 'timeline';

function show() {
  const name = (location.hash.replace(/^#\//, '') || 'timeline');
  current = loaders[name] ? name : 'timeline';
  document.querySelectorAll('.page').forEach((s) => { s.hidden = s.id !== 'page-' + current; });
  document.querySelectorAll('nav a').forEach((a) => a.classList.toggle('active', a.dataset.page === current));
  loaders[current]().catch((e) => console.error(e));
}

function connect() {
  const es = new EventSource('/api/v1/events');
  const live = $('live');
  es.onopen = () => { live.textContent = 'live'; live.className = 'live on'; };
  es.onerror = () => { live.textContent = 'reconnecting…'; live.className = 'live'; };
  es.addEventListener('post', (ev) => {
    const e = JSON.parse(ev.data);
    insertPost(e, true);
  });
  es.addEventListener('follower', () => { if (current === 'people') loadPeople(); });
  es.addEventListener('resync', () => loadTimeline(false));
}

// Signing out is a POST (a link or an image elsewhere cannot do it), sent by fetch
// so that it carries our Origin (a form would send "null" under no-referrer).
async function logout(e) {
  e.preventDefault();
  await fetch('/logout', { method: 'POST', credentials: 'same-origin' });
  location.href = '/';
}

async function init() {
  const me = await api('GET', '/whoami');
  $('me').textContent = `@${me.handle} · ${me.fingerprint}`;
  document.title = `Starling · @${me.handle}`;
  $('compose').addEventListener('submit', submitPost);
  $('compose-body').addEventListener('input', composeState);
  $('compose-body').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) submitPost(e);
  });
  $('timeline-more').addEventListener('click', () => loadTimeline(true));
  $('follow-form').addEventListener('submit', follow);
  $('logout').addEventListener('submit', logout);
  window.addEventListener('hashchange', show);
  connect();
  show();
  if (current !== 'timeline') loadTimeline(false);
  setInterval(tick, 1000);
  setInterval(() => { if (current === 'status') loadStatus(); }, 5000);
  checkClock();
  setInterval(() => { if (current !== 'status') checkClock(); }, 30000);
}

init().catch((e) => { $('me').textContent = 'cannot reach the node: ' + e.message; });
