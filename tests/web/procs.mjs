// Processes the browser tests start themselves (servers, `vite preview`): a free loopback port,
// a spawn that waits for a line saying it is up (bounded), and killing them all at the end.
import { spawn } from 'node:child_process';
import net from 'node:net';

const children = [];

/** A free TCP port on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Spawn `cmd` and resolve with the child once its output matches `ready` (within `ms`). */
export function start(cmd, args, opts, ready, ms = 20_000) {
  const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  children.push(c);
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${cmd} did not start: ${out}`)), ms);
    const on = (d) => {
      // colour codes (some CI environments force them) would split `host:port`
      out += String(d).replace(/\x1b\[[0-9;]*m/g, '');
      if (ready.test(out)) {
        clearTimeout(timer);
        resolve(c);
      }
    };
    c.stdout.on('data', on);
    c.stderr.on('data', on);
    c.on('exit', (code) => reject(new Error(`${cmd} exited (${code}): ${out}`)));
  });
}

/** Spawn `cmd` with stdin piped (the caller writes it); tracked for `killAll`. */
export function spawnTracked(cmd, args) {
  const c = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  children.push(c);
  return c;
}

/** Kill every process started here. */
export function killAll() {
  for (const c of children) c.kill('SIGKILL');
}
