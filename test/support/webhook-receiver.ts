/** A local webhook endpoint that keeps what a cloud would: every delivery per SIM, and the merged state. */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { SimEvent, SimPatch, SimRecord } from '../../record';
import { applyPatch, canonicalJson } from '../../record';

export interface WebhookReceiver {
  url: string;
  /** Deliveries per ICCID (a duplicate is a second delivery of the same SIM's patch). */
  deliveries: Map<string, number>;
  /** The state of each SIM after applying every patch received, in order. */
  state: Map<string, SimRecord>;
  total(): number;
  /** When each POST arrived (epoch ms), in order. */
  posts: number[];
  /** Deliveries that left the SIM's merged state as it was (a re-sent patch the receiver already applied). */
  noops: number;
  /** Every item received, in order, with when it arrived (epoch ms). */
  log: { iccid: string; patch: SimPatch; at: number }[];
  /** Every connectivity event received, in order (duplicates included). */
  events: (SimEvent & { deviceId: string })[];
  /** Delay before answering each POST, to stretch a publish out in time. */
  delayMs: number;
  close(): Promise<void>;
}

export async function startWebhookReceiver(delayMs = 0): Promise<WebhookReceiver> {
  const receiver = {
    deliveries: new Map<string, number>(),
    state: new Map<string, SimRecord>(),
    log: [] as WebhookReceiver['log'],
    events: [] as WebhookReceiver['events'],
    delayMs,
    posts: [] as number[],
    noops: 0,
  } as WebhookReceiver;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      receiver.posts.push(Date.now());
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
        items: { iccid: string; patch: SimPatch }[];
        events?: (SimEvent & { deviceId: string })[];
      };
      setTimeout(() => {
        for (const { iccid, patch } of body.items) {
          receiver.deliveries.set(iccid, (receiver.deliveries.get(iccid) ?? 0) + 1);
          const before = receiver.state.get(iccid);
          const after = applyPatch(before, patch);
          if (before && canonicalJson(before) === canonicalJson(after)) receiver.noops++;
          receiver.state.set(iccid, after);
          receiver.log.push({ iccid, patch, at: Date.now() });
        }
        receiver.events.push(...(body.events ?? []));
        res.writeHead(204).end();
      }, receiver.delayMs);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  receiver.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/kite`;
  receiver.total = () => [...receiver.deliveries.values()].reduce((a, b) => a + b, 0);
  receiver.close = () => {
    server.closeAllConnections();
    return new Promise((resolve) => server.close(() => resolve()));
  };
  return receiver;
}
