/** Help text shared by all commands. */
export const EXIT_STATUS_HELP = `
Exit status:
  0    success
  1    internal error (a bug; rerun with --debug and report it)
  2    usage: bad arguments, malformed hints or configuration
  3    finished with problems (bad blocks found or restored, metadata repaired or lost by a scrub)
  4    not found: unknown version, image, source or file; no store at the path
  5    conflict: target exists or is too small, version protected or too young, hints wrong
  6    key: wrong passphrase, a missing or unusable key file, or no key for an encrypted store
  10   store unavailable: cannot open, read or write the store (includes disk full)
  11   locked: another operation holds the image or version
  12   I/O error on the source or the restore target (also an unreachable Ceph cluster)
  130  interrupted (SIGINT, SIGTERM, SIGHUP, SIGQUIT)
backy2 check follows the Nagios plugin convention instead: 0 OK, 1 WARNING (late, invalid
versions), 2 CRITICAL (SLA breached), 3 UNKNOWN (the check itself failed).`;

/** Builds the text after a command's options: notes, examples, and where the exit statuses are. */
export function helpAfter(examples: readonly string[], notes = ''): string {
  return `${notes ? `\n${notes}\n` : ''}\nExamples:\n${examples.map((e) => `  ${e}`).join('\n')}\n\nExit status: see backy2 --help.\n`;
}
