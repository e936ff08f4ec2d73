/**
 * The audit trail's stored form (persisted data: `audit` in state/store.ts). One line per entry, newest first, each
 * line a JSON array `["<at, base 36>","<kind>","<target>",<what>]`:
 *
 *   kind `H`: the whole record was published (the target did not hold the SIM), and the target still holds it:
 *             `what` is 0, the record is the one `pub:<target>` holds. The commit that changes the target's
 *             record (or a resync that forgets it) first turns this entry into kind `R` with the record: no copy
 *             of the record while it stands, which for a SIM that does not change is always
 *   kind `R`: the whole record was published; `what` is the record in the form `pub:<target>` stores it
 *             (state/record-format.ts: values by position)
 *   kind `F`: the same, written before kind `R` or for a full publish whose patch is not the record the target
 *             now holds (it cleared keys); `what` is the record with short keys, as for `P`
 *   kind `P`: a patch was published; `what` is the patch
 *   kind `X`: the target refused the SIM for good; `what` is the reason (a JSON string)
 *
 * A published record or patch is stored with its keys shortened to one character, their index in `KEY_CODES` in
 * base 36 (`{"0":"8934…","b":"ONLINE"}`); a key not in the table keeps its name behind a `~`. At 1 M SIMs the
 * trail's first entry per SIM is the whole record, so the long key names and the old JSON object header
 * (`{"at":…,"target":…,"published":…,"full":true}`) were a third of it (BENCHMARKS.md, Redis memory per SIM).
 *
 * Lines written before this format (`{"at":<ms>,"target":…,"published"|"failed":…,"full"?:…}`) are still read.
 */
import { KEY_CODES, unpackRecord } from './record-format';

export { KEY_CODES } from './record-format';

const CODE_OF = new Map(KEY_CODES.map((key, i) => [key, i.toString(36)]));

/** One entry of a SIM's audit trail, as read. */
export interface AuditEntry {
  /** When, epoch ms. */
  at: number;
  target: string;
  /** The patch the target acknowledged (canonical JSON object), absent for a failure. */
  published?: Record<string, unknown>;
  /** Whether `published` was the whole record (the target did not hold the SIM before). */
  full?: boolean;
  /** Why the target refused the SIM (a permanent failure). */
  failed?: string;
  /** As parsed: a full publish of the record the target holds now (kind H); the store reads the record in. */
  held?: true;
}

/** Kinds of entry, as stored. */
export const AuditKind = { full: 'F', held: 'H', record: 'R', patch: 'P', failed: 'X' } as const;

/** The stored form of a published patch (canonical JSON in, the same values with short keys out). */
export function compactPatch(patchJson: string): string {
  const patch = JSON.parse(patchJson) as Record<string, unknown>;
  let out = '';
  for (const key in patch) {
    const code = CODE_OF.get(key) ?? `~${key}`;
    out += `${out ? ',' : '{'}${JSON.stringify(code)}:${JSON.stringify(patch[key])}`;
  }
  return out ? `${out}}` : '{}';
}

function expandPatch(compact: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const code in compact) {
    const key = code.startsWith('~') ? code.slice(1) : (KEY_CODES[parseInt(code, 36)] ?? code);
    out[key] = compact[code];
  }
  return out;
}

/** The stored head of an entry, up to its `what`: `["<at>","<kind>",<target>,`. */
export function entryHead(at: number, kind: string, target: string): string {
  return `[${JSON.stringify(at.toString(36))},"${kind}",${JSON.stringify(target)},`;
}

/** The stored line of a full publish of the record the target holds (kind H). */
export function heldLine(at: number, target: string): string {
  return `${entryHead(at, AuditKind.held, target)}0]`;
}

/** How the target's held line ends: `"H",<target>,0]`. */
export function heldEnd(target: string): string {
  return `"${AuditKind.held}",${JSON.stringify(target)},0]`;
}

/** What replaces `heldEnd` in a line, before the record and `]`: `"R",<target>,`. */
export function recordWhatHead(target: string): string {
  return `"${AuditKind.record}",${JSON.stringify(target)},`;
}

/** The stored line of a failure. */
export function failureLine(at: number, target: string, reason: string): string {
  return `${entryHead(at, AuditKind.failed, target)}${JSON.stringify(reason)}]`;
}

/**
 * One stored line of the SIM `iccid` back as an entry; undefined for a line that is neither format (skipped, not
 * fatal).
 */
export function parseAuditLine(line: string, iccid: string): AuditEntry | undefined {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (!Array.isArray(value)) return value && typeof value === 'object' ? (value as AuditEntry) : undefined; // before the compact form
  const [at, kind, target, what] = value as [string, string, string, unknown];
  const entry: AuditEntry = { at: parseInt(at, 36), target };
  if (kind === AuditKind.failed) entry.failed = String(what);
  else if (kind === AuditKind.held) {
    entry.full = true;
    entry.held = true;
  } else if (kind === AuditKind.record) {
    entry.published = JSON.parse(unpackRecord(iccid, JSON.stringify(what))) as Record<string, unknown>;
    entry.full = true;
  } else {
    entry.published = expandPatch(what as Record<string, unknown>);
    if (kind === AuditKind.full) entry.full = true;
  }
  return entry;
}

/**
 * Lua: the entry time (epoch ms) of a stored line in either format, nil if neither. Lua's `tonumber(s, 36)`
 * reads base 36 exactly for times up to the year 5000 (below 2^53).
 */
export const AUDIT_AT_LUA = `
local function audit_at(line)
  local at36 = string.match(line, '^%["(%w+)"')
  if at36 then return tonumber(at36, 36) end
  return tonumber(string.match(line, '^{"at":(%d+)'))
end`;
