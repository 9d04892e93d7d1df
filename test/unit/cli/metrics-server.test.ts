import { createServer } from 'node:net';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runNbd } from '../../../src/cli/commands/nbd.js';
import type { CliIo } from '../../../src/cli/io.js';
import { parseListenAddress, startMetricsServer } from '../../../src/cli/metrics-server.js';
import type { Store } from '../../../src/engine/store.js';
import { initStoreFor } from '../../helpers/cli.js';
import { parseExposition } from '../../helpers/exposition.js';
import { makeMemoryStore } from '../../helpers/store.js';
import { makeTempDir } from '../../helpers/temp.js';

let store: Store | undefined;
afterEach(async () => {
  await store?.close();
  store = undefined;
});

describe('parseListenAddress()', () => {
  it.each([
    ['9469', { host: '127.0.0.1', port: 9469 }],
    ['0.0.0.0:9469', { host: '0.0.0.0', port: 9469 }],
    ['localhost:0', { host: 'localhost', port: 0 }],
    ['[::1]:9469', { host: '::1', port: 9469 }],
  ])('parseListenAddress(%j)', (text, expected) => {
    expect(parseListenAddress(text)).toEqual(expected);
  });

  it.each(['', 'host:', ':9469x', '70000', 'a:b:c'])('parseListenAddress(%j) is a usage error', (text) => {
    expect(() => parseListenAddress(text)).toThrow(expect.objectContaining({ code: 'E_USAGE' }));
  });
});

describe('startMetricsServer()', () => {
  it('serves the metrics at /metrics only, and says where', async () => {
    const s = (store = makeMemoryStore());
    const lines: string[] = [];
    const server = await startMetricsServer(s, '127.0.0.1:0', (l) => lines.push(l));
    try {
      expect(lines).toEqual([`metrics on ${server.url}`]);
      const r = await fetch(server.url);
      expect(r.status).toBe(200);
      expect(r.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
      expect(parseExposition(await r.text()).get('backy2_store_images')).toBe(0);
      expect((await fetch(server.url.replace('/metrics', '/'))).status).toBe(404);
    } finally {
      await server.close();
    }
  });

  it('refuses a port in use in one line', async () => {
    const s = (store = makeMemoryStore());
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const { port } = blocker.address() as { port: number };
    try {
      await expect(startMetricsServer(s, `127.0.0.1:${port}`, () => undefined)).rejects.toMatchObject({
        code: 'E_USAGE',
        message: `Cannot serve metrics on 127.0.0.1:${port}: the port is in use`,
      });
    } finally {
      blocker.close();
    }
  });
});

describe('backy2 nbd --metrics-address', () => {
  it('serves the metrics while it serves versions, and stops with it', async () => {
    const dir = makeTempDir();
    const storeDir = path.join(dir, 'store');
    await initStoreFor({}, ['--store', storeDir]);
    const controller = new AbortController();
    let stderr = '';
    let announced: (url: string) => void = () => undefined;
    const url = new Promise<string>((resolve) => (announced = resolve));
    const io: CliIo = {
      stdout: () => undefined,
      stderr: (t) => {
        stderr += t;
        const m = /metrics on (http:\S+)/.exec(stderr);
        if (m?.[1] && stderr.includes('serving every version')) announced(m[1]);
      },
      stderrIsTTY: false,
      env: {},
      signal: controller.signal,
    };
    const running = runNbd({ port: 0, readOnly: true, metricsAddress: '127.0.0.1:0' }, { store: storeDir, json: false, debug: false }, io);
    const where = await url;
    const text = await (await fetch(where)).text();
    expect(parseExposition(text).get('backy2_store_images')).toBe(0);
    controller.abort();
    expect(await running).toBe(0);
    await expect(fetch(where)).rejects.toThrow();
  });
});
