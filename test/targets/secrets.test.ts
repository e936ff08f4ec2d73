/**
 * Connection secrets (AWS secret key and session token, webhook secret and URL token, MQTT password) never reach
 * outcome reasons, configuration errors or log lines, even when a hostile or buggy peer echoes them back.
 */
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { parseTargetConfig, ConfigError, type TargetConfig } from '../../targets/config';
import { createTarget } from '../../targets/index';
import type { PublishOutcome } from '../../targets/target';
import { freePort } from '../setup/processes';
import { testStack } from '../setup/stack';
import { fullItem, quietLogger, sampleRecord } from './fixtures';

const AWS_SECRET = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYAWSSECRET';
const AWS_TOKEN = 'FwoGZXIvYXdzEXAMPLESESSIONTOKEN0123456789';
const HOOK_SECRET = 'whsec-HOOKSECRET-0123456789';
const URL_TOKEN = 'URLTOKEN0123456789abcdef';
const MQTT_PASSWORD = 'mqtt-PASSWORD-0123456789';
const SECRETS = [AWS_SECRET, AWS_TOKEN, HOOK_SECRET, URL_TOKEN, MQTT_PASSWORD];

const lines: string[] = [];
const logger = quietLogger(lines);
const servers: (http.Server | net.Server)[] = [];

afterAll(async () => {
  for (const s of servers) {
    if (s instanceof http.Server) s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

function expectNoSecret(text: string) {
  for (const secret of SECRETS) expect(text).not.toContain(secret);
}

/** An HTTP peer that answers every request with `status` and a body that echoes the secrets it was given. */
async function echoingPeer(status: number, echoed: string[], headers: Record<string, string> = {}): Promise<string> {
  const server = http.createServer((req, res) => {
    req.resume();
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(JSON.stringify({ message: `bad credentials ${echoed.join(' ')}`, url: req.url }));
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function publishWith(raw: Record<string, unknown>): Promise<PublishOutcome[]> {
  const target = createTarget(parseTargetConfig(raw, 'secret-test') as TargetConfig, { logger });
  try {
    return await target.publish([fullItem(sampleRecord())], undefined, { group: 'g' });
  } finally {
    await target.close();
  }
}

function reasons(outcomes: PublishOutcome[]): string {
  return outcomes.map((o) => ('reason' in o ? o.reason : '')).join('\n');
}

const awsRaw = (endpoint: string) => ({
  type: 'aws',
  region: 'eu-west-1',
  endpoint,
  controlEndpoint: endpoint,
  credentials: { accessKeyId: 'AKIAEXAMPLE', secretAccessKey: AWS_SECRET, sessionToken: AWS_TOKEN },
  maxAttempts: 1,
});

describe('secrets stay out of outcomes and logs', () => {
  it('AWS: a peer that echoes the keys in its error message', async () => {
    for (const [status, type] of [
      [400, 'InvalidRequestException'],
      [403, 'UnauthorizedException'],
      [503, 'ServiceUnavailableException'],
    ] as const) {
      const outcomes = await publishWith(
        awsRaw(await echoingPeer(status, [AWS_SECRET, AWS_TOKEN], { 'x-amzn-errortype': type }))
      );
      expect(outcomes[0].status).not.toBe('ok');
      expect(reasons(outcomes)).toContain('[redacted]'); // the echo arrived, and was removed
      expectNoSecret(reasons(outcomes));
    }
  });

  it('AWS: an unreachable endpoint', async () => {
    const outcomes = await publishWith(awsRaw(`http://127.0.0.1:${await freePort()}`));
    expect(outcomes[0].status).toBe('retryable');
    expectNoSecret(reasons(outcomes));
  });

  it('webhook: a receiver that echoes the secret, and a URL carrying a token', async () => {
    const url = `${await echoingPeer(400, [HOOK_SECRET, URL_TOKEN])}/hooks/${URL_TOKEN}?token=${URL_TOKEN}`;
    const outcomes = await publishWith({ type: 'webhook', url, secret: HOOK_SECRET });
    expect(outcomes[0].status).toBe('permanent');
    expect(reasons(outcomes)).toContain('[redacted]');
    expectNoSecret(reasons(outcomes));

    const closed = `http://127.0.0.1:${await freePort()}/hooks/${URL_TOKEN}`;
    const down = await publishWith({ type: 'webhook', url: closed, secret: HOOK_SECRET, maxAttempts: 1 });
    expect(down[0].status).toBe('retryable');
    expectNoSecret(reasons(down));
  });

  it('MQTT: a broker that refuses the password, one that is down, and one that accepts it', async () => {
    // Answers CONNECT with CONNACK "bad user name or password" (return code 4).
    const refusing = net.createServer((socket) => {
      socket.once('data', () => socket.end(Buffer.from([0x20, 0x02, 0x00, 0x04])));
      socket.on('error', () => undefined);
    });
    servers.push(refusing);
    await new Promise<void>((resolve) => refusing.listen(0, '127.0.0.1', resolve));
    const mqtt = { type: 'mqtt', username: 'kite', password: MQTT_PASSWORD, timeoutMs: 2000 };

    const refused = await publishWith({ ...mqtt, url: `mqtt://127.0.0.1:${(refusing.address() as AddressInfo).port}` });
    expect(refused[0]).toMatchObject({ status: 'retryable', reason: expect.stringMatching(/cannot connect/) });
    expectNoSecret(reasons(refused));

    const down = await publishWith({ ...mqtt, url: `mqtt://127.0.0.1:${await freePort()}` });
    expect(down[0].status).toBe('retryable');
    expectNoSecret(reasons(down));

    expect((await publishWith({ ...mqtt, url: testStack.mqttUrl }))[0].status).toBe('ok');
  });

  it('no log line written during these publishes contains a secret', () => {
    expect(lines.length).toBeGreaterThan(0);
    for (const line of lines) expectNoSecret(line);
  });
});

describe('secrets stay out of configuration errors', () => {
  const cases: [string, Record<string, unknown>][] = [
    ['webhook secret too short', { type: 'webhook', url: 'https://h.example', secret: HOOK_SECRET.slice(0, 15) }],
    ['webhook secret not a string', { type: 'webhook', url: 'https://h.example', secret: [HOOK_SECRET] }],
    ['webhook url not absolute', { type: 'webhook', url: `/hooks?token=${URL_TOKEN}`, secret: HOOK_SECRET }],
    [
      'webhook typo next to a secret',
      { type: 'webhook', url: 'https://h.example', secret: HOOK_SECRET, secrte: HOOK_SECRET },
    ],
    ['mqtt password in the URL', { type: 'mqtt', url: `mqtt://kite:${MQTT_PASSWORD}@broker` }],
    ['mqtt password wrong type', { type: 'mqtt', url: 'mqtt://broker', password: { value: MQTT_PASSWORD } }],
    [
      'aws credential key misspelt',
      { ...awsRaw('https://x.example'), credentials: { accessKeyId: 'A', secretKey: AWS_SECRET } },
    ],
    [
      'aws session token wrong type',
      {
        ...awsRaw('https://x.example'),
        credentials: { accessKeyId: 'A', secretAccessKey: AWS_SECRET, sessionToken: 7 },
      },
    ],
    ['aws password in the endpoint', { ...awsRaw(`https://AKIA:${AWS_SECRET}@x.example`) }],
    ['aws bad region next to credentials', { ...awsRaw('https://x.example'), region: 'Europe' }],
  ];

  it.each(cases)('%s', (_, raw) => {
    let error: unknown;
    try {
      parseTargetConfig(raw, 'cfg');
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const { message, stack } = error as Error;
    expect(message).toMatch(/^targets\.cfg\./);
    expectNoSecret(`${message}\n${stack}`);
  });
});
