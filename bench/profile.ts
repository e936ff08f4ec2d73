/** Summarises a V8 .cpuprofile: self time by function, the top frames first. */
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import path from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface Frame {
  frame: string;
  selfMs: number;
  share: number;
}

/** Top frames by self time over every .cpuprofile in `dir`. */
export function topFrames(dir: string, limit = 15): { totalMs: number; frames: Frame[] } {
  const self = new Map<string, number>();
  let totalMs = 0;
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'))) {
    const profile = JSON.parse(readFileSync(path.join(dir, file), 'utf8')) as CpuProfile;
    const names = new Map<number, string>();
    for (const { id, callFrame: f } of profile.nodes) {
      const where = f.url
        ? `${path.relative(path.resolve(__dirname, '..'), f.url.replace(/^file:\/\//, ''))}:${f.lineNumber + 1}`
        : '';
      names.set(id, `${f.functionName || '(anonymous)'}${where ? ` ${where}` : ''}`);
    }
    profile.samples.forEach((id, i) => {
      const ms = (profile.timeDeltas[i] ?? 0) / 1000;
      const name = names.get(id)!;
      self.set(name, (self.get(name) ?? 0) + ms);
      totalMs += ms;
    });
  }
  const frames = [...self.entries()]
    .map(([frame, selfMs]) => ({ frame, selfMs, share: totalMs ? selfMs / totalMs : 0 }))
    .sort((a, b) => b.selfMs - a.selfMs)
    .slice(0, limit);
  return { totalMs, frames };
}

/** Starts V8's sampling profiler in this process (the floor runs here); `stopInto` writes a .cpuprofile. */
export async function startProfiler(): Promise<{ stopInto(dir: string): Promise<void> }> {
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
  return {
    async stopInto(dir) {
      const { profile } = await session.post('Profiler.stop');
      session.disconnect();
      mkdirSync(dir, { recursive: true });
      writeFileSync(path.join(dir, 'floor.cpuprofile'), JSON.stringify(profile));
    },
  };
}
