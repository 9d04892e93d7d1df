import { defineConfig } from 'vitest/config';

// Two projects: `unit` (memory and temp-dir stores, seconds) and `integration` (the built CLI,
// loop devices, kill -9; later FUSE, NBD clients and Ceph, all started by the tests).
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          testTimeout: 30_000,
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          globalSetup: ['test/ceph-setup.ts'],
          testTimeout: 300_000,
          hookTimeout: 120_000,
          // These tests share loop devices and the CPU; run their files one at a time.
          fileParallelism: false,
        },
      },
    ],
  },
});
