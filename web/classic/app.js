// The amrpc demo page: mirrors one worker's state machine over WebSocket with the wasm package
// (wasm-pack `--target web`, served by `amrpc serve` at /pkg) and toggles its states on click.
// Plain ES module, no build step. `?worker=NAME` picks the worker (default: downloads).

/** States every served machine has (amrpc_core::states::WORKER_STATES), listed apart. */
const WORKER_STATES = new Set([
  'ErrProviding', 'ErrSendPayload', 'SendPayload', 'Exception', 'ErrNetwork',
  'ErrHandlerTimeout', 'Start', 'Ready', 'Healthcheck',
]);

const STATUS_TEXT = {
  loading: 'loading…',
  connecting: 'connecting…',
  open: 'handshaking…',
  ready: 'live',
  disconnected: 'disconnected, reconnecting…',
  closed: 'closed',
};

const $ = (id) => document.getElementById(id);

const params = new URLSearchParams(location.search);
const worker = params.get('worker') || 'downloads';
const wsUrl = `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/ws/${encodeURIComponent(worker)}`;

/** @type {Map<string, HTMLButtonElement>} */
const rows = new Map();
/** @type {import('/pkg/amrpc.js').RemoteMachine | undefined} */
let machine;

function setStatus(status, text) {
  $('status').dataset.status = status;
  $('status-text').textContent = text ?? STATUS_TEXT[status] ?? status;
}

function showResult(kind, text) {
  const el = $('result');
  el.dataset.kind = kind;
  el.textContent = text;
}

function describe(err) {
  if (err && typeof err === 'object') {
    return err.code ? `${err.code}: ${err.message}` : String(err.message ?? err);
  }
  return String(err);
}

function makeRow(name) {
  const li = document.createElement('li');
  const btn = document.createElement('button');
  btn.type = 'button';
  btn.className = 'state';
  btn.dataset.state = name;
  btn.innerHTML =
    '<span class="state-name"></span><span class="state-flag"></span>' +
    '<span class="state-tick">tick <span class="n"></span></span>';
  btn.querySelector('.state-name').textContent = name;
  btn.addEventListener('click', () => toggle(name));
  btn.addEventListener('animationend', () => btn.classList.remove('bump'));
  li.append(btn);
  rows.set(name, btn);
  return li;
}

function updateRow(btn, tick) {
  const t = String(tick);
  if (btn.dataset.tick === t) return;
  const first = btn.dataset.tick === undefined;
  const active = tick % 2 === 1;
  const name = btn.dataset.state;
  btn.dataset.tick = t;
  btn.dataset.active = String(active);
  btn.setAttribute('aria-pressed', String(active));
  btn.title = `${active ? 'Remove' : 'Add'} ${name}`;
  btn.querySelector('.state-flag').textContent = active ? 'active' : 'inactive';
  btn.querySelector('.n').textContent = t;
  if (!first) {
    btn.classList.remove('bump');
    void btn.offsetWidth; // restart the animation
    btn.classList.add('bump');
  }
}

/** Render every state from a clock (ticks by name; odd = active). */
function render(ticks) {
  for (const [name, btn] of rows) {
    updateRow(btn, ticks[name] ?? machine.tick(name));
  }
  $('summary').textContent = machine.toString();
  if ($('inspect').closest('details').open) $('inspect').textContent = machine.inspect(undefined);
}

async function toggle(name) {
  if (!machine) return;
  const active = machine.is(name);
  const verb = active ? 'remove' : 'add';
  showResult('pending', `${verb} ${name}…`);
  try {
    const outcome = await (active ? machine.remove1(name, undefined) : machine.add1(name, undefined));
    const why = outcome === 'canceled' ? ' (a relation or a handler refused it)' : '';
    showResult(outcome, `${verb} ${name} → ${outcome}${why}`);
  } catch (err) {
    showResult('error', `${verb} ${name} failed: ${describe(err)}`);
  }
}

async function main() {
  $('worker-name').textContent = worker;
  $('ws-url').textContent = wsUrl;
  document.title = `amrpc — ${worker}`;

  let amrpc;
  try {
    amrpc = await import('/pkg/amrpc.js');
    await amrpc.default(); // fetch and instantiate amrpc_bg.wasm
  } catch (err) {
    setStatus('closed', 'no wasm package');
    showResult('error', `Cannot load the wasm package from /pkg/amrpc.js (${describe(err)}). ` +
      'Start the server with scripts/serve.sh: it builds the package when it is missing.');
    throw err;
  }

  setStatus('connecting');
  const slow = setTimeout(() => setStatus('connecting',
    `connecting… (is the server up and is “${worker}” one of its workers?)`), 3000);
  try {
    machine = await amrpc.connect(wsUrl, { clientId: 'amrpc-web' });
  } catch (err) {
    setStatus('closed', 'could not connect');
    showResult('error', `connect ${wsUrl} failed: ${describe(err)}`);
    return;
  } finally {
    clearTimeout(slow);
  }
  $('mirror-id').textContent = machine.id;

  const own = $('states');
  const common = $('worker-states');
  for (const name of machine.stateNames()) {
    (WORKER_STATES.has(name) ? common : own).append(makeRow(name));
  }
  $('worker-states-section').hidden = common.children.length === 0;
  own.removeAttribute('aria-busy');

  machine.on('clock', render);
  machine.on('status', (s) => setStatus(s));
  machine.on('error', (err) => showResult('error', describe(err)));
  $('inspect').closest('details').addEventListener('toggle', () => render(machine.clock(undefined)));
  render(machine.clock(undefined));
  setStatus(machine.status);
}

main();
