#!/usr/bin/env node
// One sending core as a Node.js service sends DogStatsD: the real `hot-shots` client
// (npm), buffered to about `--lines` lines per datagram (`maxBufferSize` from the mix's
// mean line length), called as fast as the event loop goes for `--seconds`, yielding to
// it every 1,000 calls as a service would (sends happen when the loop runs). Every call
// has rate 1, so every call is one line; prints the lines sent. A send error is fatal.
// Driven by `loadgen client --sender`; `benches/clients/build.sh` installs hot-shots
// into target/clients (found through NODE_PATH).
'use strict';
const StatsD = require('hot-shots');

const args = { addr: '127.0.0.1:8125', seconds: 5, lines: 20 };
for (let i = 2; i + 1 < process.argv.length; i += 2) {
  args[process.argv[i].replace(/^--?/, '')] = process.argv[i + 1];
}
const MEAN_LINE = 39; // the mix below, with its '\n'
const [host, port] = [args.addr.slice(0, args.addr.lastIndexOf(':')), Number(args.addr.slice(args.addr.lastIndexOf(':') + 1))];
const client = new StatsD({
  host,
  port,
  maxBufferSize: Number(args.lines) * MEAN_LINE,
  bufferFlushInterval: 100,
  errorHandler: (error) => {
    console.error(`send failed: ${error}`);
    process.exit(1);
  },
});
const routes = Array.from({ length: 50 }, (_, i) => ['service:web', 'env:prod', `route:/v${i}`]);
const queues = Array.from({ length: 20 }, (_, i) => [`queue:q${i}`]);
const web = ['service:web', 'env:prod'];
const ingest = ['service:ingest', 'env:prod', 'region:us-east-1'];
const prod = ['env:prod'];
const deadline = Date.now() + Number(args.seconds) * 1000;
let i = 0;

function chunk() {
  for (let n = 0; n < 1000; n++, i++) {
    switch (i % 6) {
      case 0: client.increment('api.requests', 1, routes[i % 50]); break;
      case 1: client.timing('api.latency', (i % 997) + (i % 10) / 10, web); break;
      case 2: client.gauge('queue.depth', i % 1000, queues[i % 20]); break;
      case 3: client.histogram('payload.bytes', i % 65536, ingest); break;
      case 4: client.set('users.active', `user-${i % 10000}`, prod); break;
      default: client.increment('cache.hits', i % 7); break;
    }
  }
  if (Date.now() < deadline) {
    setImmediate(chunk);
  } else {
    client.close(() => console.log(String(i)));
  }
}
chunk();
