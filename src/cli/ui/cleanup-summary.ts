import type { CleanupResult } from '../../engine/operations/cleanup.js';
import { formatBytes } from '../../engine/support/units.js';

/** One line saying what a cleanup deleted (or, dry, would delete) and kept. */
export function cleanupSummary(result: CleanupResult): string {
  const verb = result.dryRun ? 'Would delete' : 'Deleted';
  return (
    `${verb} ${result.blocksDeleted} blocks (${formatBytes(result.bytesFreed)}), ${result.segmentsDeleted} map segments, ` +
    `${result.orphansDeleted} orphan objects (${formatBytes(result.orphanBytes)}), ${result.tempFilesDeleted} temp files; ` +
    `kept ${result.blocksKept} unreferenced blocks (${formatBytes(result.bytesKept)}) that running writers may still use` +
    `${result.resumed ? `; finished ${result.resumed} blocks of an interrupted cleanup` : ''}`
  );
}
