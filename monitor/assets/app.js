// The agentgraph monitor page. No framework, no build step. Everything shown is built with
// createElement and textContent, never parsed as HTML, so run data cannot inject markup or
// script.
'use strict';

(function () {
  const START = '__start__';
  const END = '__end__';
  const SVG = 'http://www.w3.org/2000/svg';
  const STATES = ['pending', 'running', 'retrying', 'done', 'failed', 'interrupted'];
  const KINDS = [
    'run_started', 'run_resumed', 'thread_invoked', 'step_started', 'node_started', 'node_finished', 'node_failed',
    'retry_scheduled', 'node_cancelled', 'subgraph', 'run_interrupted', 'custom',
    'weighted_choice', 'state_updated', 'checkpoint_saved', 'graph', 'state_view',
    'run_finished', 'run_failed', 'error_routed', 'compensation_started', 'budget_exceeded', 'token', 'event',
  ];
  // How much of a node's streamed text its box shows (the whole text is its tooltip).
  const STREAM_TAIL = 48;
  const STREAM_ROOM = 320;
  const FINAL = ['completed', 'failed', 'cancelled', 'budget_exceeded'];
  const MAX_ROWS = 1000;
  const RUNS_EVERY_MS = 2000;
  const MEMORY_EVERY_MS = 3000;
  const MEMORY_PAGE = 100;

  const $ = (id) => document.getElementById(id);

  // ---- the token: from `#token=...` once, then kept for this tab only ----
  let token = sessionStorage.getItem('agentgraph-monitor-token') || '';
  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.has('token')) {
    token = hash.get('token');
    sessionStorage.setItem('agentgraph-monitor-token', token);
    hash.delete('token');
    history.replaceState(null, '', location.pathname + location.search + (hash.toString() ? '#' + hash : ''));
  }

  // ---- DOM helpers: text only ----
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null) continue;
      if (k === 'class') e.className = v;
      else e.setAttribute(k, String(v));
    }
    for (const c of children) {
      if (c === undefined || c === null) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }
  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = String(text);
    return e;
  }
  function clear(node) {
    while (node.firstChild) node.firstChild.remove();
  }

  // ---- the API ----
  const runPath = (id) => '/api/runs/' + encodeURIComponent(id);
  async function api(path) {
    const headers = token ? { Authorization: 'Bearer ' + token } : {};
    const response = await fetch(path, { headers, cache: 'no-store' });
    if (response.status === 401) {
      $('token-form').hidden = false;
      throw new Error('this monitor needs its token');
    }
    if (!response.ok) {
      let message = response.statusText;
      try { message = (await response.json()).error || message; } catch (_) { /* not JSON */ }
      const error = new Error(message);
      error.status = response.status;
      throw error;
    }
    return response.json();
  }

  $('token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    token = $('token-input').value.trim();
    sessionStorage.setItem('agentgraph-monitor-token', token);
    $('token-form').hidden = true;
    refreshRuns();
    if (current) select(current.id);
    if (view === 'memory') refreshMemory();
  });

  // ---- formatting ----
  const dur = (d) => {
    if (!d) return '';
    const ms = d.secs * 1000 + d.nanos / 1e6;
    return ms < 1000 ? ms.toFixed(ms < 10 ? 2 : 0) + ' ms' : (ms / 1000).toFixed(2) + ' s';
  };
  const time = (ms) => new Date(ms).toLocaleTimeString();
  const bytes = (n) => n < 1024 ? n + ' B' : n < 1048576 ? (n / 1024).toFixed(1) + ' KiB' : (n / 1048576).toFixed(1) + ' MiB';
  const json = (v) => JSON.stringify(v);

  function summary(kind) {
    switch (kind.type) {
      case 'run_started': return `mode ${kind.mode}, seed ${kind.seed}`;
      case 'run_resumed': return `from step ${kind.step} (${kind.restored} finished tasks restored)`;
      case 'thread_invoked': return `invocation ${kind.invocation}: input wrote ${kind.fields.length ? kind.fields.join(', ') : 'nothing'} (step ${kind.step})`;
      case 'step_started': return `step ${kind.step}: ${kind.tasks.map((t) => t.packet == null ? t.node : `${t.node}[${t.packet}]`).join(', ')}`;
      case 'node_started': return `${kind.node} (step ${kind.step}, attempt ${kind.attempt})`;
      case 'node_finished': return `${kind.node} in ${dur(kind.duration)}`;
      case 'node_failed': return `${kind.node} (attempt ${kind.attempt}): ${kind.error}`;
      case 'retry_scheduled': return `${kind.node} retries in ${dur(kind.delay)} (attempt ${kind.attempt})`;
      case 'node_cancelled': return `${kind.node} (step ${kind.step})`;
      case 'subgraph': return `[${kind.node}] ${kind.event.kind.type}: ${summary(kind.event.kind)}`;
      case 'run_interrupted': return `step ${kind.step}, waiting on ${kind.interrupts.map((i) => i.node).join(', ')}`;
      case 'custom': return `${kind.node}: ${kind.name} ${json(kind.payload)}`;
      case 'token': return `${kind.node}: ${kind.text}`;
      case 'weighted_choice': return `${kind.from} → ${kind.to} (weight ${kind.weight})`;
      case 'state_updated': return `step ${kind.step}: ${kind.fields.length ? kind.fields.join(', ') : 'nothing written'}`;
      case 'checkpoint_saved': return `step ${kind.step}, ${bytes(kind.bytes)}`;
      case 'graph': return `${kind.graph.nodes.length} nodes, ${kind.graph.edges.length} edges`;
      case 'state_view': return `step ${kind.step}: ${kind.fields.map((f) => f.field).join(', ')}`;
      case 'run_finished': return `${kind.steps} steps in ${dur(kind.duration)}`;
      case 'run_failed': return `step ${kind.step}: ${kind.error}`;
      case 'error_routed': return `${kind.node} → ${kind.handler} (step ${kind.step}): ${kind.error}`;
      case 'compensation_started': return `after step ${kind.step}, undoing ${kind.nodes.join(', ')}: ${kind.error}`;
      case 'budget_exceeded': return `${kind.scope} budget of ${kind.budget} used (${kind.used} of ${kind.limit}), stopped before step ${kind.step}`;
      default: return json(kind);
    }
  }

  // ---- the runs list ----
  let runs = [];
  async function refreshRuns() {
    try {
      const page = await api('/api/runs?limit=1000');
      runs = page.runs;
      $('runs-error').hidden = true;
      renderRuns();
      if (current) {
        const run = runs.find((r) => r.run_id === current.id);
        // A new status, or a run written again in the same one: a thread's next invocation
        // can start and end between two polls.
        const changed = run && (run.status !== current.status
          || (current.detail && run.updated_at_ms !== current.detail.updated_at_ms));
        if (changed) onStatus(run.status);
      }
    } catch (e) {
      $('runs-error').textContent = e.message;
      $('runs-error').hidden = false;
    }
  }
  function renderRuns() {
    const list = $('runs');
    clear(list);
    $('runs-count').textContent = `(${runs.length})`;
    // The tenant column, only when some run has a tenant (empty for the runs without one).
    const tenants = runs.some((r) => r.tenant != null);
    list.dataset.tenants = tenants ? 'true' : 'false';
    // Newest first (generated ids are time-ordered), subgraph runs under their parent: a
    // subgraph run is named `{parent}/@{node}/{task}`, and only those have `/@` in their id.
    const sorted = runs.slice().sort((a, b) => {
      const pa = a.run_id.split('/@')[0];
      const pb = b.run_id.split('/@')[0];
      if (pa !== pb) return b.created_at_ms - a.created_at_ms || (pa < pb ? 1 : -1);
      return a.run_id < b.run_id ? -1 : 1;
    });
    for (const run of sorted) {
      const child = run.run_id.includes('/@');
      const button = el('button', {
        class: 'run-item' + (child ? ' child' : ''),
        type: 'button',
        'data-run': run.run_id,
        'aria-current': current && current.id === run.run_id ? 'true' : 'false',
      },
      el('span', { class: 'id' }, run.run_id),
      ...session(run),
      el('span', { class: 'meta' },
        ...(tenants ? [el('span', { class: 'tenant', title: 'tenant' }, run.tenant == null ? '' : run.tenant)] : []),
        el('span', { class: 'badge', 'data-status': run.status }, run.status),
        el('span', {}, run.last_step == null ? 'no checkpoint' : `step ${run.last_step}`),
        el('span', {}, time(run.updated_at_ms))));
      button.addEventListener('click', () => select(run.run_id));
      list.append(el('li', {}, button));
    }
  }

  // A run's session (`RunConfig::metadata`): its title, user and tags, as text.
  function session(run) {
    const m = run.metadata || {};
    const parts = [];
    if (m.title) parts.push(el('span', { class: 'title' }, m.title));
    const who = [m.user ? `@${m.user}` : '', ...(m.tags || []).map((t) => `#${t}`)].filter(Boolean);
    if (who.length) parts.push(el('span', { class: 'session' }, who.join(' ')));
    return parts;
  }

  // ---- the selected run ----
  let current = null;

  function newRun(id) {
    return {
      id,
      status: null,
      detail: null,
      graph: null,
      layout: null,
      lastSeq: null,
      events: 0,
      nodes: new Map(), // name -> { state, runs }
      steps: new Map(), // step -> { tasks, fields, bytes, status }
      invocations: new Map(), // a thread's: the step of its input -> { invocation, fields }
      selectedStep: null,
      source: null,
      ended: false,
    };
  }

  async function select(id) {
    if (current && current.source) current.source.close();
    current = newRun(id);
    const run = current;
    history.replaceState(null, '', '#run=' + encodeURIComponent(id));
    renderRuns();
    $('empty').hidden = true;
    $('run').hidden = false;
    $('run-id').textContent = id;
    clear($('events'));
    clear($('timeline'));
    clear($('graph'));
    $('state').textContent = '';
    $('state-step').textContent = '';
    try {
      run.graph = await api(runPath(id) + '/graph');
    } catch (e) {
      run.graph = null;
      $('graph').append(el('p', { class: 'muted' }, e.message));
    }
    if (current !== run) return;
    if (run.graph) drawGraph(run);
    await refreshDetail(run);
    if (current !== run) return;
    loadState(run, null);
    follow(run);
  }

  function follow(run) {
    const query = [];
    if (run.lastSeq != null) query.push('after=' + run.lastSeq);
    if (token) query.push('token=' + encodeURIComponent(token));
    const source = new EventSource(runPath(run.id) + '/events' + (query.length ? '?' + query.join('&') : ''));
    run.source = source;
    run.ended = false;
    setConn('replaying');
    source.onopen = () => { if (current === run) setConn('live'); };
    for (const kind of KINDS) {
      source.addEventListener(kind, (e) => {
        if (current !== run) return;
        apply(run, JSON.parse(e.data));
      });
    }
    // A token while its node runs, before its step's events are stored: the text only.
    source.addEventListener('live_token', (e) => {
      if (current !== run) return;
      const k = JSON.parse(e.data).kind;
      stream(run, k);
      if (nodeState(run, k.node).state === 'pending') nodeState(run, k.node).state = 'running';
      paintNodes(run);
    });
    source.addEventListener('end', (e) => {
      source.close();
      if (current !== run) return;
      run.ended = true;
      setConn('ended');
      const why = JSON.parse(e.data).status;
      if (why === 'shutdown') setConn('closed');
      refreshDetail(run);
    });
    source.addEventListener('stream_error', (e) => {
      source.close();
      if (current !== run) return;
      run.ended = true;
      setConn('closed');
      showError(JSON.parse(e.data).error);
    });
    source.onerror = () => {
      if (current !== run || run.ended) return;
      // The browser reconnects by itself, sending Last-Event-ID.
      setConn(source.readyState === EventSource.CLOSED ? 'closed' : 'reconnecting');
    };
  }

  function onStatus(status) {
    const run = current;
    if (!run) return;
    // A run that ended and was written again (resumed, or a thread invoked again, which may
    // have ended already): follow it again from where we are; the stream sends what is new.
    if (run.ended) follow(run);
    refreshDetail(run);
  }

  function setConn(state) {
    const conn = $('conn');
    conn.dataset.state = state;
    conn.textContent = state;
  }

  function showError(message) {
    const box = $('run-error');
    box.textContent = message || '';
    box.hidden = !message;
  }

  // Refreshes the run's record (status, error, interrupts, next step); at most one request
  // in flight, and one more queued behind it.
  function refreshDetail(run) {
    if (run.detailBusy) { run.detailAgain = true; return Promise.resolve(); }
    run.detailBusy = true;
    return api(runPath(run.id)).then((detail) => {
      if (current !== run) return;
      run.detail = detail;
      run.status = detail.status;
      renderDetail(run);
      paintNodes(run);
    }).catch((e) => {
      if (current === run) showError(e.message);
    }).finally(() => {
      run.detailBusy = false;
      if (run.detailAgain) { run.detailAgain = false; refreshDetail(run); }
    });
  }

  function renderDetail(run) {
    const d = run.detail;
    const status = $('run-status');
    status.textContent = d.status;
    status.dataset.status = d.status;
    const facts = $('run-facts');
    clear(facts);
    const fact = (k, v) => facts.append(el('div', {}, el('dt', {}, k), el('dd', {}, v)));
    fact('step', d.last_step == null ? '–' : d.last_step);
    fact('checkpoints', d.checkpoints);
    // A thread invoked more than once (a run that is not a thread has one invocation).
    if (d.invocations > 1) fact('invocations', d.invocations);
    fact('events', d.last_event == null ? 0 : d.last_event + 1);
    fact('started', new Date(d.created_at_ms).toLocaleString());
    fact('updated', time(d.updated_at_ms));
    if (d.tenant != null) fact('tenant', d.tenant);
    if (d.forked_from) fact('forked from', `${d.forked_from.run_id} @ ${d.forked_from.step}`);
    // What the run used, as stored with its newest checkpoint, and the budget that stopped it.
    if (d.usage) {
      const u = d.usage.total;
      fact('usage', `${u.steps} steps · ${u.tokens} tokens · $${(u.cost_nanos / 1e9).toFixed(6)} · ${u.tool_calls} tool calls`);
      const stop = d.usage.stopped_by;
      if (stop) fact('stopped by', `${stop.scope} budget of ${stop.budget} (${stop.used} of ${stop.limit}), before step ${stop.step}`);
    }
    const m = d.metadata || {};
    if (m.title) fact('title', m.title);
    if (m.user) fact('user', m.user);
    if (m.tags && m.tags.length) fact('tags', m.tags.join(', '));
    for (const [k, v] of Object.entries(m.labels || {})) fact(`label ${k}`, v);
    if (d.expires_at_ms != null) fact('expires', new Date(d.expires_at_ms).toLocaleString());
    // The tasks of a stopped step: those done have saved writes, not yet committed.
    if (d.pending && d.pending.length) {
      fact(`step ${d.pending[0].step} (not committed)`, d.pending.map((t) => `${t.node}: ${t.status}`).join(', '));
    }
    showError(d.error);
    const box = $('run-interrupts');
    clear(box);
    box.hidden = d.interrupts.length === 0;
    for (const i of d.interrupts) {
      box.append(el('div', {},
        el('strong', {}, `Waiting on ${i.node}`), ` (${i.kind}, step ${i.step}, id ${i.id})`,
        el('pre', {}, JSON.stringify(i.payload, null, 2))));
    }
  }

  // ---- events ----
  function nodeState(run, name) {
    let n = run.nodes.get(name);
    if (!n) { n = { state: 'pending', runs: 0, stream: null }; run.nodes.set(name, n); }
    return n;
  }

  // A node's streamed text: the text of its newest task and attempt, from its `token` events
  // (stored, coalesced) and `live_token` events (one per token, while the node runs, before
  // the stored ones). Pieces are kept by index, so the two kinds, in any order, make the text
  // once; an older step's or attempt's tokens do not replace a newer text.
  function stream(run, k) {
    const n = nodeState(run, k.node);
    const s = n.stream;
    if (s && (k.step < s.step || (k.task === s.task && k.attempt < s.attempt))) return;
    if (!s || s.task !== k.task || s.attempt !== k.attempt) {
      n.stream = { step: k.step, task: k.task, attempt: k.attempt, pieces: new Map(), text: '', next: 0 };
    }
    const st = n.stream;
    const count = Math.max(k.count || 1, 1);
    const had = st.pieces.get(k.index);
    if (had && had.count >= count) return;
    st.pieces.set(k.index, { text: k.text, count });
    if (k.index === st.next && (st.next > 0 || st.pieces.size === 1)) {
      st.text += k.text;
      st.next += count;
    } else {
      // From the first piece held (index 0, unless the page came in mid-answer).
      st.text = '';
      st.next = Math.min(...st.pieces.keys());
    }
    // Follow on with pieces that came early.
    for (let p = st.pieces.get(st.next); p; p = st.pieces.get(st.next)) {
      st.text += p.text;
      st.next += p.count;
    }
  }
  function step(run, s) {
    let st = run.steps.get(s);
    if (!st) { st = { tasks: [], fields: null, bytes: null, status: 'running' }; run.steps.set(s, st); }
    return st;
  }

  function apply(run, event) {
    if (run.lastSeq != null && event.seq <= run.lastSeq) return; // already shown
    // A stored token event holds the numbers of the tokens coalesced into it.
    run.lastSeq = event.seq + (event.kind.type === 'token' ? Math.max(event.kind.count || 1, 1) - 1 : 0);
    run.events += 1;
    const k = event.kind;
    let redrawSteps = false;
    switch (k.type) {
      case 'graph':
        if (!run.graph || run.graph.fingerprint !== k.graph.fingerprint) {
          run.graph = k.graph;
          drawGraph(run);
        }
        break;
      case 'thread_invoked':
        // A thread's next input: a new invocation starts at this step's checkpoint, from
        // START again, so the nodes are pending again (their counts go on).
        run.invocations.set(k.step, { invocation: k.invocation, fields: k.fields });
        step(run, k.step).fields = k.fields;
        if (k.invocation > 1) for (const n of run.nodes.values()) n.state = 'pending';
        redrawSteps = true;
        break;
      case 'step_started':
        step(run, k.step).tasks = k.tasks.map((t) => t.node);
        // A step after the failure a run compensates runs a compensation.
        if (run.compensating != null && k.step > run.compensating) step(run, k.step).compensation = true;
        for (const t of k.tasks) nodeState(run, t.node).state = 'running';
        redrawSteps = true;
        break;
      case 'node_started':
        nodeState(run, k.node).state = k.attempt > 1 ? 'retrying' : 'running';
        break;
      case 'token':
        stream(run, k);
        if (nodeState(run, k.node).state === 'pending') nodeState(run, k.node).state = 'running';
        break;
      case 'retry_scheduled':
        nodeState(run, k.node).state = 'retrying';
        break;
      case 'node_failed':
        nodeState(run, k.node).state = 'failed';
        break;
      case 'node_cancelled':
        nodeState(run, k.node).state = 'failed';
        break;
      case 'node_finished': {
        const n = nodeState(run, k.node);
        n.state = 'done';
        n.runs += 1;
        break;
      }
      case 'run_interrupted':
        for (const i of k.interrupts) {
          nodeState(run, i.path.length ? i.path[0] : i.node).state = 'interrupted';
        }
        if (run.steps.has(k.step)) run.steps.get(k.step).status = 'interrupted';
        redrawSteps = true;
        break;
      case 'state_updated':
        step(run, k.step).fields = k.fields;
        redrawSteps = true;
        break;
      case 'checkpoint_saved': {
        const st = step(run, k.step);
        st.bytes = k.bytes;
        st.status = 'done';
        redrawSteps = true;
        refreshDetail(run);
        if (run.selectedStep == null) loadState(run, null);
        break;
      }
      case 'run_failed':
        if (run.steps.has(k.step) && run.steps.get(k.step).status !== 'done') run.steps.get(k.step).status = 'failed';
        redrawSteps = true;
        refreshDetail(run);
        break;
      case 'run_finished':
        refreshDetail(run);
        break;
      case 'error_routed':
        nodeState(run, k.node).state = 'failed';
        break;
      case 'compensation_started': {
        run.compensating = k.step;
        const st = step(run, k.step);
        st.tasks = [`failed; undo ${k.nodes.join(', ')}`];
        st.compensation = true;
        redrawSteps = true;
        break;
      }
      default:
        break;
    }
    logEvent(run, event);
    if (redrawSteps) renderTimeline(run);
    paintNodes(run);
  }

  function logEvent(run, event) {
    const body = $('events');
    const k = event.kind;
    if (k.type === 'token') {
      // A task's tokens that come one after another share one row, its text growing.
      const top = body.firstElementChild;
      const key = `${k.task}/${k.attempt}`;
      if (top && top.getAttribute('data-type') === 'token' && top.getAttribute('data-key') === key) {
        top.lastElementChild.textContent += k.text;
        $('events-count').textContent = `(${run.events}${run.events > MAX_ROWS ? `, newest ${MAX_ROWS} shown` : ''})`;
        return;
      }
      const row = el('tr', { 'data-type': 'token', 'data-seq': event.seq, 'data-key': key },
        el('td', {}, event.seq),
        el('td', {}, 'token'),
        el('td', {}, summary(k)));
      body.prepend(row);
      while (body.childElementCount > MAX_ROWS) body.lastElementChild.remove();
      $('events-count').textContent = `(${run.events}${run.events > MAX_ROWS ? `, newest ${MAX_ROWS} shown` : ''})`;
      return;
    }
    const row = el('tr', { 'data-type': event.kind.type, 'data-seq': event.seq },
      el('td', {}, event.seq),
      el('td', {}, event.kind.type),
      el('td', {}, summary(event.kind)));
    body.prepend(row);
    while (body.childElementCount > MAX_ROWS) body.lastElementChild.remove();
    $('events-count').textContent = `(${run.events}${run.events > MAX_ROWS ? `, newest ${MAX_ROWS} shown` : ''})`;
  }

  // ---- timeline ----
  // A thread's invocations share its one timeline: a label starts each, on a line of its own.
  function renderTimeline(run) {
    const list = $('timeline');
    clear(list);
    const steps = new Set(run.steps.keys());
    for (const s of run.invocations.keys()) steps.add(s);
    let invocation = null;
    for (const s of Array.from(steps).sort((a, b) => a - b)) {
      const st = step(run, s);
      const start = run.invocations.get(s);
      if (start) {
        invocation = start.invocation;
        list.append(el('li', { class: 'invocation', 'data-invocation': invocation },
          el('span', { class: 'label' }, `invocation ${invocation}`),
          el('span', { class: 'muted' }, ` · input wrote ${start.fields.length ? start.fields.join(', ') : 'nothing'}`)));
      }
      const input = s === 0 || start !== undefined;
      const button = el('button', {
        class: 'step',
        type: 'button',
        'data-step': s,
        'data-status': st.status,
        'data-invocation': invocation,
        'data-compensation': st.compensation ? 'true' : 'false',
        'aria-pressed': run.selectedStep === s ? 'true' : 'false',
      },
      el('div', { class: 'n' }, input ? `step ${s} · input` : `step ${s}${st.compensation ? ' · compensate' : ''}`),
      el('div', { class: 'tasks' }, st.tasks.length ? st.tasks.join(', ') : (input ? 'the input' : '')),
      el('div', { class: 'fields' },
        st.fields == null ? '' : (st.fields.length ? 'wrote ' + st.fields.join(', ') : 'wrote nothing'),
        st.bytes == null ? '' : ` · ${bytes(st.bytes)}`));
      button.addEventListener('click', () => {
        run.selectedStep = run.selectedStep === s ? null : s;
        renderTimeline(run);
        loadState(run, run.selectedStep);
      });
      list.append(el('li', {}, button));
    }
  }

  // ---- state ----
  function loadState(run, s) {
    const seq = (run.stateSeq || 0) + 1;
    run.stateSeq = seq;
    const query = s == null ? '' : '?step=' + s;
    api(runPath(run.id) + '/state' + query).then((state) => {
      if (current !== run || run.stateSeq !== seq) return;
      $('state-step').textContent = s == null ? '(latest)' : `(after step ${s})`;
      $('state').textContent = JSON.stringify(state, null, 2);
    }).catch((e) => {
      if (current !== run || run.stateSeq !== seq) return;
      $('state-step').textContent = '';
      $('state').textContent = e.message;
    });
  }

  // ---- the graph ----
  function legend() {
    const list = $('legend');
    clear(list);
    for (const s of STATES) {
      list.append(el('li', {}, el('span', { class: 'swatch', 'data-state': s }), s));
    }
    list.append(el('li', {}, el('span', { class: 'edge-key' }), 'edge'));
    list.append(el('li', {}, el('span', { class: 'edge-key back' }), 'loop back'));
    list.append(el('li', {}, el('span', { class: 'edge-key error' }), 'on error'));
    list.append(el('li', {}, el('span', { class: 'edge-key compensate' }), 'compensate'));
  }

  // Layers by longest path from START over the graph without its back edges (found by a
  // depth-first search from START); END below everything; each layer ordered by the mean
  // position of its predecessors.
  function layout(graph) {
    const names = [START, ...graph.nodes.map((n) => n.name), END];
    const index = new Map(names.map((n, i) => [n, i]));
    const out = names.map(() => []);
    const edges = [];
    for (const e of graph.edges) {
      const from = index.get(e.from);
      const to = index.get(e.to);
      if (from === undefined || to === undefined) continue;
      const edge = { from, to, kind: e.kind, weight: e.weight, back: false };
      edges.push(edge);
      out[from].push(edge);
    }
    // Back edges: to a node on the depth-first search's stack.
    const color = names.map(() => 0); // 0 new, 1 on the stack, 2 done
    const visit = (root) => {
      const stack = [[root, 0]];
      color[root] = 1;
      while (stack.length) {
        const top = stack[stack.length - 1];
        const [v, i] = top;
        if (i < out[v].length) {
          top[1] += 1;
          const e = out[v][i];
          if (color[e.to] === 1) e.back = true;
          else if (color[e.to] === 0) { color[e.to] = 1; stack.push([e.to, 0]); }
        } else {
          color[v] = 2;
          stack.pop();
        }
      }
    };
    visit(0);
    for (let i = 0; i < names.length; i++) if (color[i] === 0) visit(i);
    // Longest path layering over the forward edges (Kahn's order).
    const indeg = names.map(() => 0);
    for (const e of edges) if (!e.back && e.from !== e.to) indeg[e.to] += 1;
    const layer = names.map(() => 0);
    const queue = names.map((_, i) => i).filter((i) => indeg[i] === 0);
    while (queue.length) {
      const v = queue.shift();
      for (const e of out[v]) {
        if (e.back || e.from === e.to) continue;
        layer[e.to] = Math.max(layer[e.to], layer[v] + 1);
        if (--indeg[e.to] === 0) queue.push(e.to);
      }
    }
    const endIndex = names.length - 1;
    layer[0] = 0;
    layer[endIndex] = Math.max(0, ...layer.slice(0, endIndex)) + 1;
    const layers = [];
    names.forEach((_, i) => { (layers[layer[i]] = layers[layer[i]] || []).push(i); });
    // Order each layer by the mean position of its predecessors in the layer above.
    const pos = names.map(() => 0);
    layers.forEach((members, l) => {
      if (l > 0) {
        const key = (v) => {
          const preds = edges.filter((e) => e.to === v && !e.back && layer[e.from] < l).map((e) => pos[e.from]);
          return preds.length ? preds.reduce((a, b) => a + b, 0) / preds.length : v;
        };
        const keys = new Map(members.map((v) => [v, key(v)]));
        members.sort((a, b) => keys.get(a) - keys.get(b) || a - b);
      }
      members.forEach((v, i) => { pos[v] = i; });
    });
    // Coordinates.
    const width = (i) => (i === 0 || i === endIndex) ? 16 : Math.max(90, names[i].length * 8 + 28);
    const gap = 28;
    const layerWidths = layers.map((m) => (m || []).reduce((w, v) => w + width(v), 0) + gap * Math.max(0, (m || []).length - 1));
    const total = Math.max(240, ...layerWidths) + 140; // room for loop-back arcs on the right
    const boxes = names.map(() => null);
    layers.forEach((members, l) => {
      let x = (total - 140 - layerWidths[l]) / 2 + 20;
      for (const v of members || []) {
        const w = width(v);
        const h = (v === 0 || v === endIndex) ? 16 : 36;
        const y = 24 + l * 84 + (36 - h) / 2;
        boxes[v] = { x, y, w, h, cx: x + w / 2, cy: y + h / 2 };
        x += w + gap;
      }
    });
    const height = 24 + layers.length * 84;
    return { names, edges, boxes, total, height, endIndex };
  }

  function drawGraph(run) {
    const graph = run.graph;
    const L = layout(graph);
    run.layout = L;
    const root = $('graph');
    clear(root);
    // Room on the right for the nodes' streamed text.
    const width = L.total + STREAM_ROOM;
    const s = svg('svg', { width, height: L.height, viewBox: `0 0 ${width} ${L.height}`, role: 'img', 'aria-label': 'graph of the run' });
    const defs = svg('defs');
    for (const [id, cls] of [['arrow', 'arrow'], ['arrow-back', 'arrow back']]) {
      const marker = svg('marker', { id, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' });
      marker.append(svg('path', { d: 'M 0 0 L 10 5 L 0 10 z', class: cls }));
      defs.append(marker);
    }
    s.append(defs);
    const edgeLayer = svg('g');
    const nodeLayer = svg('g');
    s.append(edgeLayer, nodeLayer);
    let backs = 0;
    for (const e of L.edges) {
      const a = L.boxes[e.from];
      const b = L.boxes[e.to];
      let d;
      if (e.back || e.from === e.to) {
        // Out of the right side of the source, around, into the right side of the target.
        const bulge = Math.max(a.x + a.w, b.x + b.w) + 30 + 14 * (backs++ % 5);
        d = `M ${a.x + a.w} ${a.cy} C ${bulge} ${a.cy}, ${bulge} ${b.cy}, ${b.x + b.w + 2} ${b.cy}`;
      } else {
        const x1 = a.cx;
        const y1 = a.y + a.h;
        const x2 = b.cx;
        const y2 = b.y - 2;
        const my = (y1 + y2) / 2;
        d = `M ${x1} ${y1} C ${x1} ${my}, ${x2} ${my}, ${x2} ${y2}`;
      }
      const back = e.back || e.from === e.to;
      const path = svg('path', { d, class: `edge ${e.kind}${back ? ' back' : ''}`, 'marker-end': `url(#${back ? 'arrow-back' : 'arrow'})` });
      path.append(svg('title', {}, `${L.names[e.from]} → ${L.names[e.to]} (${e.kind}${back ? ', loops back' : ''})`));
      edgeLayer.append(path);
      if (e.weight != null) {
        edgeLayer.append(svg('text', { x: (a.cx + b.cx) / 2 + 6, y: (a.y + a.h + b.y) / 2, class: 'edge-label' }, e.weight));
      }
    }
    L.names.forEach((name, i) => {
      const box = L.boxes[i];
      if (i === 0 || i === L.endIndex) {
        const g = svg('g', { class: 'terminal' });
        g.append(svg('circle', { cx: box.cx, cy: box.cy, r: 7 }));
        g.append(svg('text', { x: box.cx + 12, y: box.cy + 4 }, i === 0 ? 'start' : 'end'));
        nodeLayer.append(g);
        return;
      }
      const info = graph.nodes[i - 1];
      const g = svg('g', { class: 'node', 'data-node': name, 'data-state': 'pending' });
      g.append(svg('rect', { x: box.x, y: box.y, width: box.w, height: box.h, rx: 8 }));
      g.append(svg('text', { x: box.cx, y: box.cy + 5, 'text-anchor': 'middle' }, name));
      g.append(svg('text', { x: box.x + box.w - 4, y: box.y - 4, 'text-anchor': 'end', class: 'count' }, ''));
      // What the node streams (a model's answer), growing while it is called.
      const streamed = svg('text', { x: box.x + box.w + 8, y: box.cy + 4, class: 'stream' }, '');
      streamed.append(svg('title', {}, ''));
      g.append(streamed);
      g.append(svg('title', {}, `${name} (${info.kind}${info.interrupt_before ? ', interrupt before' : ''}${info.interrupt_after ? ', interrupt after' : ''})`));
      nodeLayer.append(g);
    });
    root.append(s);
    paintNodes(run);
  }

  // Colours the nodes: what the events say, and, while the run runs, the nodes of the step
  // after its newest checkpoint as running (a step's events are stored with its checkpoint).
  function paintNodes(run) {
    if (!run.layout) return;
    const running = run.detail && run.detail.status === 'running' ? new Set(run.detail.next) : new Set();
    const waiting = run.detail && run.detail.status === 'interrupted'
      ? new Set(run.detail.interrupts.map((i) => i.path.length ? i.path[0] : i.node)) : new Set();
    for (const g of $('graph').querySelectorAll('g.node')) {
      const name = g.getAttribute('data-node');
      const n = run.nodes.get(name) || { state: 'pending', runs: 0 };
      let state = n.state;
      if (waiting.has(name)) state = 'interrupted';
      else if (running.has(name) && state !== 'retrying') state = 'running';
      g.setAttribute('data-state', state);
      g.querySelector('.count').textContent = n.runs > 1 ? `×${n.runs}` : '';
      const streamed = g.querySelector('.stream');
      if (streamed) {
        const text = n.stream ? n.stream.text.replace(/\s+/g, ' ') : '';
        const tail = text.length > STREAM_TAIL ? '…' + text.slice(-STREAM_TAIL) : text;
        streamed.firstChild.textContent = n.stream ? n.stream.text : '';
        if (streamed.lastChild.nodeType === Node.TEXT_NODE) streamed.lastChild.remove();
        streamed.append(document.createTextNode(tail));
      }
    }
  }

  // ---- views: the runs, or long-term memory ----
  let view = 'runs';
  function show(which) {
    view = which;
    for (const b of document.querySelectorAll('.view-btn')) {
      b.setAttribute('aria-pressed', b.dataset.view === which ? 'true' : 'false');
    }
    $('runs-view').hidden = which !== 'runs';
    $('memory-view').hidden = which !== 'memory';
    if (which === 'memory') {
      history.replaceState(null, '', '#memory=' + encodeURIComponent(memory.namespace));
      refreshMemory();
    } else {
      history.replaceState(null, '', current ? '#run=' + encodeURIComponent(current.id) : '#');
    }
  }
  for (const b of document.querySelectorAll('.view-btn')) {
    b.addEventListener('click', () => show(b.dataset.view));
  }

  // ---- memory: namespaces, and the items under one, filtered ----
  // A namespace is shown and sent as its segments joined by `/` (the root is '').
  const memory = { namespace: '', filter: '', items: [], more: false, seq: 0, busy: false };
  const nsPath = (segments) => segments.join('/');

  function ago(ms) {
    const s = Math.round(Math.abs(ms) / 1000);
    if (s < 60) return s + ' s';
    if (s < 3600) return Math.floor(s / 60) + ' min ' + (s % 60) + ' s';
    if (s < 86400) return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
    return Math.floor(s / 86400) + ' d ' + Math.floor((s % 86400) / 3600) + ' h';
  }
  function expiry(at) {
    if (at == null) return 'never';
    const left = at - Date.now();
    return left > 0 ? `in ${ago(left)}` : 'expired';
  }

  function memoryQuery(offset, limit) {
    const q = ['namespace=' + encodeURIComponent(memory.namespace), 'limit=' + limit, 'offset=' + offset];
    if (memory.filter) q.push('filter=' + encodeURIComponent(memory.filter));
    return '/api/memory?' + q.join('&');
  }

  function memoryError(box, e) {
    box.textContent = e.status === 409 ? 'This store keeps no memory items.' : e.message;
    box.hidden = false;
  }

  async function refreshNamespaces() {
    try {
      const body = await api('/api/memory/namespaces');
      $('ns-error').hidden = true;
      renderNamespaces(body.namespaces);
    } catch (e) {
      memoryError($('ns-error'), e);
    }
  }

  function renderNamespaces(namespaces) {
    const list = $('namespaces');
    clear(list);
    $('ns-count').textContent = `(${namespaces.length})`;
    const entry = (path, label) => {
      const button = el('button', {
        class: 'run-item ns-item',
        type: 'button',
        'data-namespace': path,
        'aria-current': memory.namespace === path ? 'true' : 'false',
      }, el('span', { class: 'id' }, label));
      button.addEventListener('click', () => selectNamespace(path));
      list.append(el('li', {}, button));
    };
    entry('', 'every namespace');
    for (const ns of namespaces) entry(nsPath(ns), nsPath(ns));
  }

  function selectNamespace(path) {
    memory.namespace = path;
    memory.items = [];
    history.replaceState(null, '', '#memory=' + encodeURIComponent(path));
    for (const b of document.querySelectorAll('.ns-item')) {
      b.setAttribute('aria-current', b.dataset.namespace === path ? 'true' : 'false');
    }
    loadItems(false);
  }

  // Loads the items again (as many as were shown, at least a page), or the next page after
  // them; a newer request wins over an older one still under way.
  async function loadItems(more) {
    const seq = ++memory.seq;
    const offset = more ? memory.items.length : 0;
    const limit = more ? MEMORY_PAGE : Math.max(MEMORY_PAGE, memory.items.length);
    try {
      const body = await api(memoryQuery(offset, limit));
      if (seq !== memory.seq) return;
      memory.items = more ? memory.items.concat(body.items) : body.items;
      memory.more = body.items.length === limit;
      $('memory-error').hidden = true;
    } catch (e) {
      if (seq !== memory.seq) return;
      memory.items = [];
      memory.more = false;
      memoryError($('memory-error'), e);
    }
    renderItems();
  }

  function renderItems() {
    const text = $('memory-text').value.trim().toLowerCase();
    const shown = text
      ? memory.items.filter((i) => (i.key + ' ' + JSON.stringify(i.value)).toLowerCase().includes(text))
      : memory.items;
    $('memory-ns').textContent = memory.namespace || 'every namespace';
    $('memory-count').textContent = text
      ? `(${shown.length} of ${memory.items.length}${memory.more ? '+' : ''} items)`
      : `(${memory.items.length}${memory.more ? '+' : ''} items)`;
    const body = $('memory-items');
    clear(body);
    for (const item of shown) {
      const soon = item.expires_at_ms != null && item.expires_at_ms - Date.now() < 60000;
      body.append(el('tr', {
        'data-namespace': nsPath(item.namespace),
        'data-key': item.key,
        'data-expiring': soon ? 'true' : 'false',
      },
      el('td', {}, nsPath(item.namespace)),
      el('td', {}, item.key),
      el('td', {}, el('pre', {}, JSON.stringify(item.value, null, 2))),
      el('td', { title: new Date(item.updated_at_ms).toLocaleString() }, `${ago(Date.now() - item.updated_at_ms)} ago`),
      el('td', { title: item.expires_at_ms == null ? '' : new Date(item.expires_at_ms).toLocaleString() }, expiry(item.expires_at_ms))));
    }
    $('memory-empty').hidden = shown.length > 0 || !$('memory-error').hidden;
    $('memory-more').hidden = !memory.more;
  }

  function refreshMemory() {
    if (memory.busy) return;
    memory.busy = true;
    Promise.all([refreshNamespaces(), loadItems(false)]).finally(() => { memory.busy = false; });
  }

  $('memory-search').addEventListener('submit', (e) => {
    e.preventDefault();
    memory.filter = $('memory-filter').value.trim();
    memory.items = [];
    loadItems(false);
  });
  $('memory-text').addEventListener('input', renderItems);
  $('memory-more').addEventListener('click', () => loadItems(true));

  // ---- start ----
  legend();
  const start = new URLSearchParams(location.hash.slice(1));
  if (start.has('memory')) {
    memory.namespace = start.get('memory');
    show('memory');
  }
  refreshRuns().then(() => {
    const wanted = new URLSearchParams(location.hash.slice(1)).get('run');
    if (wanted && runs.some((r) => r.run_id === wanted)) select(wanted);
  });
  setInterval(refreshRuns, RUNS_EVERY_MS);
  // Memory is read while it is shown (the store is not watched for it).
  setInterval(() => { if (view === 'memory' && !document.hidden) refreshMemory(); }, MEMORY_EVERY_MS);
})();
