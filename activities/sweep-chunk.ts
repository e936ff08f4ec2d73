/**
 * How an inventory sweep hands one page's members of a group to that group's fetch (state/sweeps.ts stores the
 * text): their positions in the listing, then the SIMs as Kite sent them, as a list answer. The reading fetch
 * splits it as it splits Kite's own pages (kite/entries.ts): a settled SIM whose entry did not change is not
 * parsed there either.
 *
 *   <position>,<position>,…\n{"subscriptionData":[<entry as sent>,…]}
 *
 * Workers before this form wrote a JSON array of `[position, SIM]`; such a chunk is still read.
 */
import { entriesOfSims, splitListAnswer, type KiteEntries, type KiteSim } from '../kite';

/** One member of a group in a sweep's page: its position in the listing and its entry's JSON text. */
export interface SweepMember {
  position: number;
  text: string;
}

export function encodeSweepChunk(members: SweepMember[]): string {
  const positions = members.map((m) => m.position).join(',');
  return `${positions}\n{"subscriptionData":[${members.map((m) => m.text).join(',')}]}`;
}

/** The chunk's members: their positions in the listing, and their entries. */
export function decodeSweepChunk(chunk: string, where: string): { positions: number[]; entries: KiteEntries } {
  if (chunk.startsWith('[')) {
    const members = JSON.parse(chunk) as [position: number, sim: KiteSim][];
    return { positions: members.map(([position]) => position), entries: entriesOfSims(members.map(([, sim]) => sim)) };
  }
  const newline = chunk.indexOf('\n');
  const positions = newline > 0 ? chunk.slice(0, newline).split(',').map(Number) : [];
  const entries = splitListAnswer(Buffer.from(chunk.slice(newline + 1)), where);
  if (!entries || entries.length !== positions.length || positions.some((p) => !Number.isInteger(p))) {
    throw new Error(`a chunk of ${where} is not what a sweep writes (${chunk.length} characters)`);
  }
  return { positions, entries };
}
