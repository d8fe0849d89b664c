// Starling web UI: one page, no build step. Talks to the node's /api/v1 with the
// session cookie; live updates arrive as server-sent events (/api/v1/events).
// Everything a user or the network wrote is inserted with textContent, never as HTML.
//
// Pages are client-side routes: #/timeline, #/people, #/archive, #/status, and
// #/u/<handle or key> (a user's page). When the node cannot be reached (the event
// stream fails, a request fails), a notice says so and the node is asked again
// every few seconds; once it answers, a second notice says so and the page reloads
// what it shows (events sent meanwhile were missed).
'use strict';

const MAX_CHARS = 280;
// Between two checks of an unreachable node: from the first to the last, doubling.
const RETRY_FIRST_MS = 500;
const RETRY_LAST_MS = 4000;
// How long the "connected again" notice stays.
const BACK_NOTICE_MS = 15000;
// The second key of a two-key shortcut (g h) must follow within this.
const CHORD_MS = 1500;
const $ = (id) => document.getElementById(id);

// ---- connection --------------------------------------------------------------------

const conn = {
  es: null, // the EventSource, while connected
  checking: false, // a loop of checks runs (the node did not answer)
  down: false, // the "lost" notice is up
  downSince: 0,
  wake: null, // ends the current pause between checks ("Retry now")
  backTimer: null,
  openedAt: 0, // when the stream was last opened
};

async function api(method, path, body) {
  const opts = { method, credentials: 'same-origin', headers: {} };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  let r;
  try {
    r = await fetch('/api/v1' + path, opts);
  } catch (_) {
    connectionTrouble();
    const e = new Error('Cannot reach your Starling node; try again once it is back.');
    e.status = 0;
    e.code = 'unreachable';
    throw e;
  }
  let data = null;
  try { data = await r.json(); } catch (_) { /* empty body */ }
  if (!r.ok) {
    const e = new Error(data && data.error ? data.error.message : `HTTP ${r.status}`);
    e.status = r.status;
    e.code = data && data.error ? data.error.code : 'http';
    // The session is over: the sign-in page says how to get back in.
    if (r.status === 401) { location.href = '/'; }
    throw e;
  }
  return data;
}

function setLive(on, text) {
  const live = $('live');
  live.textContent = text;
  live.className = on ? 'live on' : 'live';
}

// The event stream, opened again after every outage. `opened` runs once the node
// streams to us: what is loaded from then on misses nothing.
function connect(opened) {
  const es = new EventSource('/api/v1/events');
  conn.es = es;
  es.onopen = () => {
    conn.openedAt = Date.now();
    setLive(true, 'live');
    if (opened) opened();
  };
  es.onerror = () => { if (conn.es === es) connectionTrouble(); };
  es.addEventListener('post', (ev) => onPost(JSON.parse(ev.data)));
  es.addEventListener('follower', () => {
    if (current === 'people') loadPeople().catch(console.error);
    if (current === 'user') loadUser(userPage.target, true).catch(console.error);
  });
  es.addEventListener('resync', () => { refresh(); });
}

// Something failed: check whether the node answers, and until it does, say so and
// keep checking.
function connectionTrouble() {
  if (conn.checking) return;
  conn.checking = true;
  if (conn.es) { conn.es.close(); conn.es = null; }
  setLive(false, 'reconnecting…');
  checkUntilBack().catch(console.error);
}

async function reachable() {
  try {
    const r = await fetch('/api/v1/whoami', { credentials: 'same-origin', cache: 'no-store' });
    return r.status;
  } catch (_) {
    return 0;
  }
}

function pause(ms) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    conn.wake = () => { clearTimeout(t); resolve(); };
  });
}

async function checkUntilBack() {
  let wait = RETRY_FIRST_MS;
  // A stream that fails again right after it opened is not reopened at once
  // (the node answers, but its stream does not hold: do not spin).
  if (Date.now() - conn.openedAt < 5000) await pause(2 * RETRY_FIRST_MS);
  for (;;) {
    const status = await reachable();
    if (status === 200) break;
    if (status === 401) { location.href = '/'; return; }
    showLost(status);
    await pause(wait);
    wait = Math.min(wait * 2, RETRY_LAST_MS);
  }
  conn.checking = false;
  conn.wake = null;
  // Whatever happened meanwhile was not streamed to us: load it again once the
  // stream is open (so that nothing falls between the two).
  connect(async () => {
    await refresh();
    if (conn.down) showBack();
  });
}

function showLost(status) {
  if (!conn.down) {
    conn.down = true;
    conn.downSince = Date.now();
    $('conn-back').hidden = true;
  }
  setLive(false, 'offline');
  const since = new Date(conn.downSince).toLocaleTimeString();
  const why = status ? `it answers with an error (HTTP ${status})` : 'it does not answer';
  const text = `Lost the connection to your Starling node at ${since}: ${why}. ` +
    'Trying again every few seconds; if it stopped, start it again (starling up). ' +
    'Posts made meanwhile will show up once it is back.';
  // Announced when it changes, not at every try.
  if ($('conn-lost-text').textContent !== text) $('conn-lost-text').textContent = text;
  $('conn-lost').hidden = false;
}

function showBack() {
  conn.down = false;
  // What failed for want of the node may be tried again now.
  const err = $('compose-error');
  if (err.dataset.fromServer === 'unreachable') { err.textContent = ''; err.dataset.fromServer = ''; }
  $('conn-lost').hidden = true;
  $('conn-back-text').textContent = 'Connected to your Starling node again; this page is up to date.';
  $('conn-back').hidden = false;
  clearTimeout(conn.backTimer);
  conn.backTimer = setTimeout(() => { $('conn-back').hidden = true; }, BACK_NOTICE_MS);
}

// ---- helpers -----------------------------------------------------------------------

const chars = (s) => [...s].length; // Unicode scalar values, as the node counts

// "just now", "42 s ago", "3 min ago", "5 h ago", "2 d ago", or the date.
function relative(ms) {
  const d = Date.now() - ms;
  const s = Math.floor(Math.abs(d) / 1000);
  if (s < 10) return 'just now';
  let a;
  if (s < 60) a = `${s} s`;
  else if (s < 3600) a = `${Math.floor(s / 60)} min`;
  else if (s < 86400) a = `${Math.floor(s / 3600)} h`;
  else if (s < 30 * 86400) a = `${Math.floor(s / 86400)} d`;
  else return new Date(ms).toLocaleDateString();
  return d < 0 ? `in ${a}` : `${a} ago`;
}

function exact(ms) {
  return new Date(ms).toLocaleString(undefined, { dateStyle: 'full', timeStyle: 'medium' });
}

// A time shown relative to now (kept up to date by the tick), exact in its tooltip.
function timeEl(ms, cls = 'ts') {
  const t = el('time', cls, relative(ms));
  t.dateTime = new Date(ms).toISOString();
  t.dataset.ts = String(ms);
  t.title = exact(ms);
  return t;
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

function nameOf(u) {
  return u.handle ? '@' + u.handle : u.peer_id;
}

const userHref = (target) => '#/u/' + encodeURIComponent(target);

function userLink(cls, text, target, title) {
  const a = el('a', cls, text);
  a.href = userHref(target);
  if (title) a.title = title;
  return a;
}

// @handle in a post's text (a-z, 0-9, _; 2-40 long), not inside a word or an
// address (bob@example.com).
const MENTION = /(?<![A-Za-z0-9_@.])@([a-z0-9_]{2,40})(?![A-Za-z0-9_])/g;

function renderBody(text) {
  const body = el('div', 'body');
  let last = 0;
  for (const m of text.matchAll(MENTION)) {
    if (m.index > last) body.append(document.createTextNode(text.slice(last, m.index)));
    body.append(userLink('mention', m[0], m[1], `${m[0]}'s page`));
    last = m.index + m[0].length;
  }
  if (last < text.length) body.append(document.createTextNode(text.slice(last)));
  return body;
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
  li.dataset.author = p.author;
  li.dataset.expires = p.expires_at;
  li.tabIndex = -1;
  const meta = el('div', 'meta');
  meta.append(
    userLink('who', who(p), p.author, `${p.handle ? '@' + p.handle + ' · ' : ''}key ${p.author}`),
    el('span', 'fp', p.fingerprint),
    el('span', 'seq', '#' + p.seq),
    timeEl(p.ts_ms),
  );
  if (p.repost_of) meta.append(el('span', 'repost', `↻ reposted #${p.repost_of.seq}`));
  if (opts.archive) {
    const expired = el('span', 'expired', 'expired ');
    expired.append(timeEl(p.expires_at, 'ts expired-at'));
    meta.append(expired);
  }
  li.append(meta, renderBody(p.body));
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

// Posts that arrived live, remembered per list so that a page loaded meanwhile
// does not drop them (its answer may have been read before they were stored).
const LIVE_KEPT = 200;

// A list of posts kept in timeline order, without duplicates or expired posts.
class PostList {
  constructor(list, empty) {
    this.list = list;
    this.empty = empty;
    this.shown = new Map(); // key -> post
    this.live = []; // the latest posts inserted live, oldest first
    this.liveCount = 0; // how many were ever inserted live
  }

  clear() {
    this.shown.clear();
    this.list.replaceChildren();
  }

  // Where the live posts stand now: pass it to `replace` after loading a page.
  mark() {
    return this.liveCount;
  }

  // Shows `posts` instead of what is shown, keeping what arrived live since `mark`.
  replace(posts, mark) {
    const since = this.live.slice(Math.max(0, this.live.length - (this.liveCount - mark)));
    this.clear();
    posts.forEach((p) => this.insert(p, false));
    since.forEach((p) => this.insert(p, false));
  }

  insert(p, fresh) {
    if (fresh) {
      this.live.push(p);
      this.liveCount += 1;
      if (this.live.length > LIVE_KEPT) this.live.shift();
    }
    if (this.shown.has(key(p)) || p.expires_at <= Date.now()) return false;
    this.shown.set(key(p), p);
    const li = renderPost(p);
    if (fresh) li.classList.add('new');
    let before = null;
    for (const child of this.list.children) {
      if (newer(p, this.shown.get(child.dataset.key))) { before = child; break; }
    }
    this.list.insertBefore(li, before);
    this.empty.hidden = true;
    return true;
  }

  removeAuthor(author) {
    for (const li of [...this.list.children]) {
      if (li.dataset.author === author) { this.shown.delete(li.dataset.key); li.remove(); }
    }
  }

  expire(now) {
    for (const li of [...this.list.children]) {
      if (Number(li.dataset.expires) <= now) { this.shown.delete(li.dataset.key); li.remove(); }
    }
  }

  get size() { return this.shown.size; }
}

// ---- timeline ----------------------------------------------------------------------

let timelineList;
let nextCursor = null;

async function loadTimeline(more) {
  const q = more && nextCursor ? `?limit=50&before=${encodeURIComponent(nextCursor)}` : '?limit=50';
  const mark = timelineList.mark();
  const page = await api('GET', '/timeline' + q);
  if (more) page.posts.forEach((p) => timelineList.insert(p, false));
  else timelineList.replace(page.posts, mark);
  nextCursor = page.next_cursor;
  $('timeline-more').hidden = !nextCursor;
  $('timeline-empty').hidden = timelineList.size > 0;
}

// A post that entered the timeline (ours or received), live.
function onPost(p) {
  const added = timelineList.insert(p, true);
  if (current === 'user' && userPage.user && userPage.user.peer_id === p.author) {
    userList.insert(p, true);
    if (userPage.user.pending) loadUser(userPage.target, true).catch(console.error);
  }
  if (added && !p.mine) $('announce').textContent = `New post by ${who(p)}: ${p.body.slice(0, 100)}`;
}

// Once a second: times move on, expired posts leave.
function tick() {
  const now = Date.now();
  timelineList.expire(now);
  userList.expire(now);
  document.querySelectorAll('time[data-ts]').forEach((t) => {
    const text = relative(Number(t.dataset.ts));
    if (t.textContent !== text) t.textContent = text;
  });
  $('timeline-empty').hidden = timelineList.size > 0;
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
  } else if (!err.dataset.fromServer) {
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
    timelineList.insert(p, true);
  } catch (e) {
    err.textContent = e.message;
    err.dataset.fromServer = e.code === 'unreachable' ? 'unreachable' : 'yes';
  }
  composeState();
}

// ---- a user's page -----------------------------------------------------------------

let userList;
const userPage = {
  target: null, // as in the address: a handle or a key
  user: null, // what /users/{target} said
  cursor: null,
  seq: 0, // the latest load; older answers are dropped
};

function badge(cls, text) {
  return el('span', 'badge ' + cls, text);
}

function relation(u) {
  if (u.me) return 'This is you.';
  const parts = [];
  if (u.following) {
    parts.push(u.pending
      ? `You follow ${nameOf(u)}; they have not acknowledged it yet (they may be offline: it is delivered once they are reachable).`
      : `You follow ${nameOf(u)}.`);
  } else {
    parts.push(`You do not follow ${nameOf(u)}.`);
  }
  parts.push(u.follows_me ? 'They follow you.' : 'They do not follow you.');
  return parts.join(' ');
}

function renderUser(u) {
  const name = u.handle ? '@' + u.handle : 'Handle not known yet';
  $('user-title').textContent = name;
  document.title = `${u.handle ? '@' + u.handle : u.fingerprint} · Starling`;
  const badges = [];
  if (u.me) badges.push(badge('ok', 'You'));
  if (u.follows_me) badges.push(badge('ok follows-you', 'Follows you'));
  if (u.following) badges.push(u.pending ? badge('pending', 'Following (pending)') : badge('ok', 'Following'));
  $('user-badges').replaceChildren(...badges);
  $('user-fingerprint').textContent = u.fingerprint;
  $('user-key').textContent = u.peer_id;
  $('user-relation').textContent = relation(u);
  const b = $('user-follow');
  b.hidden = u.me;
  b.textContent = u.following ? 'Unfollow' : 'Follow';
  b.className = u.following ? 'secondary' : '';
  b.setAttribute('aria-label', `${u.following ? 'Unfollow' : 'Follow'} ${nameOf(u)}`);
  b.disabled = false;
  const note = $('user-note');
  note.hidden = u.me || u.following;
  note.textContent = `This node keeps only the posts of people you follow: follow ${nameOf(u)} to see theirs.`;
}

function clearUser(title) {
  $('user-title').textContent = title;
  for (const id of ['user-badges', 'user-fingerprint', 'user-key', 'user-relation', 'user-message']) {
    $(id).replaceChildren();
  }
  $('user-follow').hidden = true;
  $('user-note').hidden = true;
  $('user-empty').hidden = true;
  $('user-more').hidden = true;
  userList.clear();
}

// Loads the page of `target`; `quiet` refreshes what is shown without clearing it.
async function loadUser(target, quiet = false) {
  const seq = ++userPage.seq;
  if (!quiet || userPage.target !== target) {
    userPage.target = target;
    userPage.user = null;
    clearUser('Loading…');
  }
  let u;
  try {
    u = await api('GET', '/users/' + encodeURIComponent(target));
  } catch (e) {
    if (seq !== userPage.seq) return;
    clearUser(e.status === 404 ? 'No such user' : 'Cannot show this user');
    say('user-message', e.message, false);
    return;
  }
  if (seq !== userPage.seq) return;
  userPage.user = u;
  renderUser(u);
  await loadUserPosts(false, seq);
}

async function loadUserPosts(more, seq = userPage.seq) {
  const u = userPage.user;
  if (!u) return;
  const q = more && userPage.cursor ? `?limit=50&before=${encodeURIComponent(userPage.cursor)}` : '?limit=50';
  const mark = userList.mark();
  const page = await api('GET', `/users/${encodeURIComponent(u.peer_id)}/posts${q}`);
  if (seq !== userPage.seq) return;
  if (more) page.posts.forEach((p) => userList.insert(p, false));
  else userList.replace(page.posts, mark);
  userPage.cursor = page.next_cursor;
  $('user-more').hidden = !page.next_cursor;
  const empty = $('user-empty');
  empty.hidden = userList.size > 0 || !(u.me || u.following);
  empty.textContent = u.me
    ? 'You have no live posts.'
    : `No live posts of ${nameOf(u)} here yet${u.pending ? ': they arrive once their node is reachable' : ''}.`;
}

async function toggleFollow() {
  const u = userPage.user;
  if (!u || u.me) return;
  const b = $('user-follow');
  b.disabled = true;
  try {
    if (u.following) {
      await api('POST', '/unfollow', { target: u.peer_id });
      say('user-message', `You no longer follow ${nameOf(u)}; their posts left this node.`, true);
      timelineList.removeAuthor(u.peer_id);
    } else {
      await api('POST', '/follow', { target: u.peer_id });
      say('user-message', `You follow ${nameOf(u)}.`, true);
    }
  } catch (e) {
    say('user-message', e.message, false);
  }
  await loadUser(userPage.target, true);
  if (!u.following) loadTimeline(false).catch(console.error);
}

// ---- people ------------------------------------------------------------------------

function personRow(f, kind) {
  const li = el('li');
  li.dataset.peer = f.peer_id;
  const main = el('div', 'grow');
  main.append(userLink('who', f.handle ? '@' + f.handle : 'unknown handle', f.peer_id), document.createTextNode(' '),
    el('span', 'fp', f.fingerprint), el('span', 'key', f.peer_id));
  li.append(main);
  const since = el('span', 'since', 'since ');
  since.append(timeEl(f.since_ms));
  li.append(since);
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
  loadPeople().catch(console.error);
  loadTimeline(false).catch(console.error);
}

async function unfollow(f, button) {
  button.disabled = true;
  try {
    await api('POST', '/unfollow', { target: f.peer_id });
    say('follow-message', `No longer following ${f.handle ? '@' + f.handle : f.peer_id}.`, true);
  } catch (e) {
    say('follow-message', e.message, false);
  }
  loadPeople().catch(console.error);
  loadTimeline(false).catch(console.error);
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
    timelineList.insert(p, true);
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

// ---- navigation --------------------------------------------------------------------

const loaders = {
  timeline: () => loadTimeline(false),
  people: loadPeople,
  archive: loadArchive,
  status: loadStatus,
  user: () => loadUser(userPage.target),
};
let current = 'timeline';
let goingTo = null; // the hash go() just showed
let myKey = null;

// The page an address names: #/timeline, #/u/<handle or key>, ...
function route(hash) {
  const u = /^#\/u\/(.+)$/.exec(hash);
  if (u) {
    let target = u[1];
    try { target = decodeURIComponent(target); } catch (_) { /* shown as written */ }
    return { page: 'user', target };
  }
  const name = hash.replace(/^#\//, '') || 'timeline';
  return { page: loaders[name] && name !== 'user' ? name : 'timeline' };
}

function show() {
  const r = route(location.hash);
  current = r.page;
  if (r.page === 'user') userPage.target = r.target;
  else document.title = myKey ? `Starling · ${$('me').dataset.handle}` : 'Starling';
  document.querySelectorAll('.page').forEach((s) => { s.hidden = s.id !== 'page-' + current; });
  document.querySelectorAll('nav a').forEach((a) => {
    const on = a.dataset.page === current;
    a.classList.toggle('active', on);
    if (on) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  });
  loaders[current]().catch((e) => console.error(e));
}

// Shows the page of `hash` now (its hashchange event, which comes later, is then
// not shown again).
function go(hash) {
  if (location.hash !== hash) {
    goingTo = hash;
    location.hash = hash;
  }
  show();
}

function onHashChange() {
  if (goingTo === location.hash) { goingTo = null; return; }
  goingTo = null;
  show();
}

// Whatever the page shows, loaded again (after an outage or missed events).
function refresh() {
  const loads = [current === 'user' ? loadUser(userPage.target, true) : loaders[current]()];
  if (current !== 'timeline') loads.push(loadTimeline(false));
  loads.push(checkClock());
  return Promise.allSettled(loads).then((done) => {
    done.filter((d) => d.status === 'rejected').forEach((d) => console.error(d.reason));
  });
}

// ---- keyboard ----------------------------------------------------------------------

let chordAt = 0; // when `g` was pressed, waiting for its second key

function typing(t) {
  return t instanceof HTMLElement &&
    (t.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(t.tagName));
}

function visiblePosts() {
  const list = document.querySelector('.page:not([hidden]) ol.posts');
  return list ? [...list.querySelectorAll(':scope > li.post')] : [];
}

function selectPost(step) {
  const items = visiblePosts();
  if (!items.length) return;
  let i = items.findIndex((li) => li.classList.contains('selected'));
  i = i < 0 ? (step > 0 ? 0 : items.length - 1) : Math.min(items.length - 1, Math.max(0, i + step));
  document.querySelectorAll('li.post.selected').forEach((li) => li.classList.remove('selected'));
  const li = items[i];
  li.classList.add('selected');
  li.focus();
  li.scrollIntoView({ block: 'nearest' });
}

function openSelected() {
  const li = visiblePosts().find((p) => p.classList.contains('selected'));
  if (li) go(userHref(li.dataset.author));
}

function composeNow() {
  go('#/timeline');
  const box = $('compose-body');
  box.focus();
  box.scrollIntoView({ block: 'nearest' });
}

function toggleHelp() {
  const d = $('shortcuts');
  if (d.open) d.close(); else d.showModal();
}

function onKey(e) {
  if (e.defaultPrevented || e.isComposing) return;
  if (e.key === 'Escape') {
    // Leaves the text box (an open dialog closes by itself).
    if (typing(e.target)) { e.target.blur(); e.preventDefault(); }
    else document.querySelectorAll('li.post.selected').forEach((li) => li.classList.remove('selected'));
    return;
  }
  if (typing(e.target) || e.ctrlKey || e.metaKey || e.altKey) return;
  if ($('shortcuts').open) {
    if (e.key === '?') { toggleHelp(); e.preventDefault(); }
    return;
  }
  if (chordAt && Date.now() - chordAt < CHORD_MS) {
    chordAt = 0;
    const to = { h: '#/timeline', p: '#/people', a: '#/archive', s: '#/status', u: myKey && userHref(myKey) }[e.key];
    if (to) { go(to); e.preventDefault(); }
    return;
  }
  chordAt = 0;
  switch (e.key) {
    case 'g': chordAt = Date.now(); break;
    case 'n': case 'c': composeNow(); break;
    case 'j': selectPost(1); break;
    case 'k': selectPost(-1); break;
    case 'o': openSelected(); break;
    case 'Enter':
      // On a selected post only: links and buttons keep their Enter.
      if (!(e.target instanceof HTMLElement && e.target.matches('li.post'))) return;
      openSelected();
      break;
    case '?': toggleHelp(); break;
    default: return;
  }
  e.preventDefault();
}

// ---- start -------------------------------------------------------------------------

// Signing out is a POST (a link or an image elsewhere cannot do it), sent by fetch
// so that it carries our Origin (a form would send "null" under no-referrer).
async function logout(e) {
  e.preventDefault();
  await fetch('/logout', { method: 'POST', credentials: 'same-origin' });
  location.href = '/';
}

async function init() {
  timelineList = new PostList($('timeline'), $('timeline-empty'));
  userList = new PostList($('user-posts'), $('user-empty'));
  const me = await api('GET', '/whoami');
  myKey = me.peer_id;
  const meLink = $('me');
  meLink.textContent = `@${me.handle} · ${me.fingerprint}`;
  meLink.dataset.handle = '@' + me.handle;
  meLink.href = userHref(me.peer_id);
  document.title = `Starling · @${me.handle}`;
  $('compose').addEventListener('submit', submitPost);
  $('compose-body').addEventListener('input', composeState);
  $('compose-body').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) submitPost(e);
  });
  $('timeline-more').addEventListener('click', () => loadTimeline(true).catch(console.error));
  $('user-more').addEventListener('click', () => loadUserPosts(true).catch(console.error));
  $('user-follow').addEventListener('click', toggleFollow);
  $('follow-form').addEventListener('submit', follow);
  $('logout').addEventListener('submit', logout);
  $('help-button').addEventListener('click', toggleHelp);
  $('shortcuts-close').addEventListener('click', () => $('shortcuts').close());
  $('conn-retry').addEventListener('click', () => { if (conn.wake) conn.wake(); });
  $('conn-back-close').addEventListener('click', () => { $('conn-back').hidden = true; });
  document.addEventListener('keydown', onKey);
  window.addEventListener('hashchange', onHashChange);
  show();
  // The timeline again once the stream is open: a post made between the first load
  // and then would be missing.
  connect(() => loadTimeline(false).catch(console.error));
  setInterval(tick, 1000);
  setInterval(() => {
    if (conn.checking) return;
    if (current === 'status') loadStatus().catch(console.error);
    // Until they acknowledge, their page asks again now and then.
    if (current === 'user' && userPage.user && userPage.user.pending) {
      loadUser(userPage.target, true).catch(console.error);
    }
  }, 5000);
  checkClock();
  setInterval(() => { if (current !== 'status' && !conn.checking) checkClock(); }, 30000);
}

init().catch((e) => {
  $('me').textContent = 'cannot reach the node: ' + e.message;
  // The page itself came from the node: once it answers again, start over.
  if (e.status === 0) setTimeout(() => location.reload(), RETRY_LAST_MS);
});
