// Sends records to a Forward Protocol server with fluent-logger (npm), the
// independent client of tests/logs/test_logs_trust.py, and waits for every ack.
//
//   node send.js  (settings from the environment)
//   FORWARD_PORT, FORWARD_TAG, FORWARD_COUNT, FORWARD_RUN: where and what
//   FORWARD_SHARED_KEY, FORWARD_HOSTNAME, FORWARD_USERNAME, FORWARD_PASSWORD: <security>
//   FORWARD_CA: a CA file, which switches TLS on (server name localhost)
//   FORWARD_MODE: Message (default) or CompressedPackedForward
//
// Exits 0 once every record is acked; prints the error and exits 1 otherwise.
'use strict';

const fs = require('fs');
const logger = require('fluent-logger');

const env = process.env;
const count = parseInt(env.FORWARD_COUNT || '10', 10);
const options = {
  host: '127.0.0.1',
  port: parseInt(env.FORWARD_PORT, 10),
  timeout: 5.0,
  reconnectInterval: 600000,
  requireAckResponse: true,
  ackResponseTimeout: 10000,
  eventMode: env.FORWARD_MODE || 'Message',
  internalLogger: { info() {}, error(...args) { console.error(...args); } },
};
if (env.FORWARD_SHARED_KEY !== undefined) {
  options.security = {
    clientHostname: env.FORWARD_HOSTNAME || 'node-client',
    sharedKey: env.FORWARD_SHARED_KEY,
    username: env.FORWARD_USERNAME || '',
    password: env.FORWARD_PASSWORD || '',
  };
}
if (env.FORWARD_CA) {
  options.tls = true;
  options.tlsOptions = { ca: [fs.readFileSync(env.FORWARD_CA)], servername: 'localhost' };
}

const sender = logger.createFluentSender('node', options);
let acked = 0;
const fail = (error) => {
  console.error(`fluent-logger: ${error && (error.message || error)}`);
  process.exit(1);
};
sender.on('error', fail);
setTimeout(() => fail(new Error(`only ${acked} of ${count} acked in 30 s`)), 30000).unref();
for (let n = 0; n < count; n++) {
  sender.emit(env.FORWARD_TAG || 'interop', { n, run: env.FORWARD_RUN || '' }, (error) => {
    if (error) fail(error);
    acked += 1;
    if (acked === count) {
      sender.end();
      process.exit(0);
    }
  });
}
