// The live benchmark's subscribers in Node (simulators/live_bench.py --node-modules DIR).
//
// A thousand graphql-transport-ws connections cost the Python client 16-21% of a core, on the core that
// the benchmark gives csms's PostgreSQL; the same work in Node with the `ws` package (the one the OCPP
// harness's load generator uses) costs a few percent, so the tool disturbs what it measures less.
//
//   node simulators/live_subscribers.js CONFIG.json
//
// CONFIG: {"url": "ws://.../graphql", "query": "...", "subs": [[token, sessionId], ...], "out": "file"}.
// Prints "ready" once every subscriber got its first `next` (the session's current state). On "stop" on
// stdin it writes every `next` it got to "out" as JSON: [[subscriber index, epoch seconds, energyWh],
// ...] in arrival order, plus the error and closed-socket counts, and exits.
'use strict';
const fs = require('fs');
const WebSocket = require('ws');

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const CONCURRENCY = 40;
const records = [];
let errors = 0;
let closed = 0;
let ready = 0;
let stopping = false;
const sockets = [];

// Wall-clock seconds with sub-millisecond resolution, comparable with Python's time.time().
const now = () => (performance.timeOrigin + performance.now()) / 1000;

function open(index) {
  return new Promise((resolve) => {
    const [token, sessionId] = config.subs[index];
    const ws = new WebSocket(config.url, 'graphql-transport-ws');
    sockets.push(ws);
    let first = true;
    ws.on('open', () => ws.send(JSON.stringify({ type: 'connection_init', payload: { Authorization: `Bearer ${token}` } })));
    ws.on('message', (data) => {
      const at = now();
      const message = JSON.parse(data);
      if (message.type === 'connection_ack') {
        ws.send(JSON.stringify({ id: 'live', type: 'subscribe', payload: { query: config.query, variables: { id: sessionId } } }));
      } else if (message.type === 'ping') {
        ws.send('{"type":"pong"}');
      } else if (message.type === 'next' && !(message.payload && message.payload.errors)) {
        records.push([index, at, message.payload.data.sessionUpdated.energyWh]);
        if (first) { first = false; ready += 1; resolve(); }
      } else if (message.type !== 'pong') {
        errors += 1;
        if (first) { first = false; resolve(); }
      }
    });
    ws.on('error', () => { errors += 1; });
    ws.on('close', () => {
      if (!stopping) closed += 1;
      if (first) { first = false; resolve(); }
    });
  });
}

async function main() {
  let next = 0;
  const worker = async () => { while (next < config.subs.length) await open(next++); };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  if (ready < config.subs.length) {
    process.stderr.write(`only ${ready} of ${config.subs.length} subscribers got their session\n`);
    process.exit(1);
  }
  process.stdout.write('ready\n');
}

process.stdin.on('data', (chunk) => {
  if (!chunk.toString().includes('stop')) return;
  stopping = true;
  fs.writeFileSync(config.out, JSON.stringify({ records, errors, closed }));
  for (const ws of sockets) ws.terminate();
  process.exit(0);
});

process.stdin.on('end', () => process.exit(0));  // the Python side went away

main();
