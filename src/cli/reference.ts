/**
 * The manual page backy2(1) and the bash completion, generated from the same command
 * definitions as `--help` (commander), so they cannot drift apart. scripts/build-deb writes them
 * into the package.
 */
import type { Command } from 'commander';
import { PACKAGE_VERSION } from '../engine/support/package-version.js';
import type { CommandContext } from './command-context.js';
import { buildProgram } from './program.js';

/** Width of the help text in the manual page. */
const WIDTH = 78;

/** The help of every command, in the order `backy2 --help` lists them; subcommands follow their parent. */
function helpTexts(): { readonly path: string; readonly text: string; readonly command: Command }[] {
  let captured = '';
  const ctx: CommandContext = {
    io: { stdout: (t) => (captured += t), stderr: () => undefined, stderrIsTTY: false, env: {} },
    exitCode: 0,
  };
  const program = buildProgram(ctx);
  const out: { path: string; text: string; command: Command }[] = [];
  const visit = (command: Command, path: string) => {
    command.configureHelp({ helpWidth: WIDTH });
    captured = '';
    command.outputHelp();
    out.push({ path, text: captured, command });
    for (const sub of command.commands) visit(sub, `${path} ${sub.name()}`);
  };
  visit(program, 'backy2');
  return out;
}

/** Text for a no-fill block of roff: backslashes, leading dots and quotes, hyphens and non-ASCII characters escaped. */
function roffLiteral(text: string): string {
  return text
    .replace(/\\/g, '\\e')
    .replace(/-/g, '\\-')
    .replace(/[^\t\n -~]/gu, (c) => `\\[u${(c.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0')}]`)
    .split('\n')
    .map((line) => (/^[.']/.test(line) ? `\\&${line}` : line))
    .join('\n');
}

/**
 * The manual page backy2(1), in roff (man macros).
 * @param date the page's date (YYYY-MM-DD) @default SOURCE_DATE_EPOCH, else today
 */
export function manPage(date?: string): string {
  const epoch = process.env.SOURCE_DATE_EPOCH;
  const day = date ?? new Date(epoch ? Number(epoch) * 1000 : Date.now()).toISOString().slice(0, 10);
  const [top, ...commands] = helpTexts();
  const lines = [
    `.TH BACKY2 1 "${day}" "backy2 ${PACKAGE_VERSION}" "User Commands"`,
    '.SH NAME',
    'backy2 \\- deduplicating block\\-based backup and restore of disk images, block devices and Ceph RBD images',
    '.SH SYNOPSIS',
    '.B backy2',
    '[\\fIglobal options\\fR] \\fIcommand\\fR [\\fIarguments\\fR]',
    '.SH DESCRIPTION',
    'backy2 reads an image in fixed blocks, skips all\\-zero blocks and stores every distinct block once',
    'across all images and versions, in a directory or an S3 bucket. Versions can be restored, mounted',
    '(FUSE), served over NBD, kept by retention policies and checked against schedules.',
    'What follows is the output of \\fBbacky2 \\-\\-help\\fR and of \\fB\\-\\-help\\fR of every command.',
    '.PP',
    '.nf',
    roffLiteral((top?.text ?? '').trimEnd()),
    '.fi',
    '.SH COMMANDS',
  ];
  for (const c of commands) {
    lines.push(`.SS ${roffLiteral(c.path)}`, '.nf', roffLiteral(c.text.trimEnd()), '.fi');
  }
  lines.push(
    '.SH FILES',
    '.TP',
    '.I /etc/backy2.yaml',
    'The configuration, read when present and no other is named (\\fB\\-\\-config\\fR, \\fBBACKY2_CONFIG\\fR).',
    '.TP',
    '.I ~/.local/share/backy2',
    'The default store (\\fB\\-\\-store\\fR, \\fBBACKY2_STORE\\fR or the config\'s \\fBstore\\fR name another).',
    '.SH ENVIRONMENT',
    '\\fBBACKY2_STORE\\fR, \\fBBACKY2_CONFIG\\fR, \\fBBACKY2_METRICS_FILE\\fR, \\fBNODE_DEBUG=backy2\\fR (timings), \\fBCEPH_CONF\\fR.',
    '.SH SEE ALSO',
    '.BR rbd (8),',
    '.BR qemu\\-img (1),',
    '.BR nbdinfo (1),',
    '.BR systemd.timer (5)',
    '',
  );
  return lines.join('\n');
}

/** The bash completion script: commands, their options, and file names where they fit. */
export function bashCompletion(): string {
  const [top, ...commands] = helpTexts();
  const flags = (command: Command) => command.options.flatMap((o) => [o.long, o.short].filter((f): f is string => Boolean(f)));
  const topLevel = commands.filter((c) => c.path.split(' ').length === 2);
  const cases = commands.map((c) => {
    const words = c.path.split(' ').slice(1);
    const subs = c.command.commands.map((s) => s.name());
    return `    "${words.join(' ')}") opts="${[...flags(c.command), '--help', ...subs].join(' ')}" ;;`;
  });
  const fileOptions = ['--store', '--config', '-c', '--metrics-file', '--log', '-r', '--hints', '-s', '--source'];
  const globalsWithValue = (top?.command.options ?? []).filter((o) => o.required || o.optional).flatMap((o) => [o.long, o.short].filter((f): f is string => Boolean(f)));
  return `# bash completion for backy2 (generated from its --help)
_backy2() {
  local cur prev cmd="" i
  cur="\${COMP_WORDS[COMP_CWORD]}"
  prev="\${COMP_WORDS[COMP_CWORD-1]}"
  case "$prev" in
    ${fileOptions.join('|')})
      COMPREPLY=($(compgen -f -- "$cur"))
      return ;;
  esac
  for ((i = 1; i < COMP_CWORD; i++)); do
    case "\${COMP_WORDS[i]}" in
      ${globalsWithValue.join('|')}) [[ -z $cmd ]] && ((i++)) ;;
      -*) ;;
      *) if [[ -z $cmd ]]; then cmd="\${COMP_WORDS[i]}"; elif [[ $cmd == db ]]; then cmd="db \${COMP_WORDS[i]}"; break; else break; fi ;;
    esac
  done
  local opts
  case "$cmd" in
    "") opts="${[...topLevel.map((c) => c.command.name()), ...(top ? flags(top.command) : []), '--help'].join(' ')}" ;;
${cases.join('\n')}
    *) opts="" ;;
  esac
  if [[ $cur == -* || -z $cmd || $cmd == db ]]; then
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
  else
    COMPREPLY=($(compgen -f -- "$cur"))
  fi
}
complete -o filenames -F _backy2 backy2
`;
}
