import { hostname } from 'node:os';
import { describe, expect, it } from 'vitest';
import { isLoopback, serverUri } from '../../../src/nbd/server.js';

describe('isLoopback()', () => {
  it.each([
    ['127.0.0.1', true],
    ['127.1.2.3', true],
    ['::1', true],
    ['::ffff:127.0.0.1', true],
    ['0.0.0.0', false],
    ['::', false],
    ['192.168.1.10', false],
    ['fe80::1', false],
    ['1270.0.0.1', false],
  ])('%s → %s', (address, loopback) => {
    expect(isLoopback(address)).toBe(loopback);
  });
});

describe('serverUri()', () => {
  it('puts IPv6 addresses in brackets and names this machine for a wildcard address', () => {
    expect(serverUri('127.0.0.1', 10809)).toBe('nbd://127.0.0.1:10809');
    expect(serverUri('::1', 10809)).toBe('nbd://[::1]:10809');
    expect(serverUri('0.0.0.0', 1)).toBe(`nbd://${hostname()}:1`);
    expect(serverUri('::', 1)).toBe(`nbd://${hostname()}:1`);
  });

  it('is nbds:// when TLS is required', () => {
    expect(serverUri('127.0.0.1', 10809, { tls: true })).toBe('nbds://127.0.0.1:10809');
    expect(serverUri('::1', 10809, { tls: true })).toBe('nbds://[::1]:10809');
  });
});
