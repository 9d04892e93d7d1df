import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { UsageError, errnoCode } from '../engine/errors.js';
import { collectMetrics } from '../engine/operations/metrics.js';
import type { Store } from '../engine/store.js';
import { renderExposition } from './ui/exposition.js';

/** A running metrics endpoint. */
export interface MetricsServer {
  /** `http://HOST:PORT/metrics`. */
  readonly url: string;
  close(): Promise<void>;
}

/**
 * Parses `--metrics-address`: `PORT` (on 127.0.0.1), `HOST:PORT` or `[IPv6]:PORT`.
 * @throws {UsageError} when it is none of these
 */
export function parseListenAddress(text: string): { host: string; port: number } {
  const m = /^(?:(\[[^\]]+\]|[^:]+):)?(\d{1,5})$/.exec(text.trim());
  const port = Number(m?.[2]);
  if (!m || port > 65535) throw new UsageError(`Invalid --metrics-address "${text}": use PORT, HOST:PORT or [IPv6]:PORT (e.g. 127.0.0.1:9469)`);
  return { host: (m[1] ?? '127.0.0.1').replace(/^\[|\]$/g, ''), port };
}

/**
 * Serves the store's metrics (Prometheus text format) at `GET /metrics` for as long as a daemon
 * (mount, nbd) runs. Each request collects them afresh.
 * @throws {UsageError} when the address cannot be bound (in use, not this machine's, privileged)
 */
export async function startMetricsServer(store: Store, address: string, log: (line: string) => void): Promise<MetricsServer> {
  const { host, port } = parseListenAddress(address);
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found: the metrics are at /metrics\n');
      return;
    }
    collectMetrics(store)
      .then((families) => res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(renderExposition(families)))
      .catch((err: unknown) => {
        log(`metrics: ${err instanceof Error ? err.message : String(err)}`);
        res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end('metrics failed; see the log\n');
      });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => {
      const why = errnoCode(err) === 'EADDRINUSE' ? 'the port is in use' : errnoCode(err) === 'EADDRNOTAVAIL' ? 'not an address of this machine' : errnoCode(err) === 'EACCES' ? 'a privileged port' : err.message;
      reject(new UsageError(`Cannot serve metrics on ${address}: ${why}`, { hint: 'choose another --metrics-address' }));
    });
    server.listen(port, host, () => resolve());
  });
  const bound = server.address() as AddressInfo;
  const url = `http://${bound.family === 'IPv6' ? `[${bound.address}]` : bound.address}:${bound.port}/metrics`;
  log(`metrics on ${url}`);
  return {
    url,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
