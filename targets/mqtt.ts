/**
 * MQTT target for any broker. Per SIM and change, two QoS 1 JSON messages:
 * - on `stateTopicTemplate`, retained: the SIM's whole record as it now stands (`PublishItem.state`), so the
 *   retained message is always the state, and a subscriber joining at any time gets every SIM's full record;
 * - on `changesTopicTemplate`, not retained: the patch (changed keys, `null` for a key that disappeared; the
 *   whole record on a first publish), for consumers that react to changes.
 * A SIM is acknowledged once the broker has acknowledged both; a retry sends both again. Connectivity events go
 * to `eventsTopicTemplate`, one QoS 1 message per event, not retained.
 *
 * One connection per target, opened on the first publish and reopened after a loss. Automatic reconnection is
 * off on purpose: a QoS 1 message left unacknowledged would be re-sent after a reconnect, possibly after a newer
 * message for the same SIM, and the retained value would go back in time. A message without PUBACK in time
 * instead drops the connection (discarding its queue) and is reported retryable.
 */
import type { Socket } from 'node:net';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { mapPoolByKey } from '../shared/concurrency';
import { localBudgets, peerId, type Budgets, type RateBudget } from '../shared/limits';
import { createLogger, redact, scrub, type Logger } from '../shared/log';
import type { MqttTargetConfig } from './mqtt-config';
import {
  abortedOutcome,
  type EventItem,
  type PublishContext,
  type PublishItem,
  type PublishOutcome,
  type Target,
} from './target';

export interface MqttTargetDeps {
  logger?: Logger;
  /** @default localBudgets() */
  budgets?: Budgets;
}

/** A live connection and a promise that rejects when it closes, to fail its pending publishes at once. */
interface Connection {
  client: MqttClient;
  closed: Promise<never>;
}

const TOPIC_VALUE_FORBIDDEN = /[/+#\0]/;

export class MqttTarget implements Target {
  readonly name: string;
  private connection?: Promise<Connection>;
  /** The client behind `connection`, so that a stale client's close does not forget a newer connection. */
  private activeClient?: MqttClient;
  readonly itemsPerSecond: number;
  private readonly rate: RateBudget;
  private readonly log: Logger;
  /** `host:port`, for reasons and logs; never the URL's user part. */
  private readonly broker: string;

  constructor(
    private readonly config: MqttTargetConfig,
    deps: MqttTargetDeps = {}
  ) {
    this.name = config.name;
    this.log = (deps.logger ?? createLogger()).child({ target: config.name, type: 'mqtt' });
    this.broker = new URL(config.url).host;
    this.itemsPerSecond = config.requestsPerSecond;
    this.rate = (deps.budgets ?? localBudgets()).rate(mqttBrokerPeer(config), {
      perSecond: config.requestsPerSecond,
      burst: config.burst,
    });
  }

  async publish(items: PublishItem[], signal?: AbortSignal, context?: PublishContext): Promise<PublishOutcome[]> {
    const topics = items.map((item) => this.topicsFor(item, context));
    let connection: Connection;
    try {
      connection = await this.connect();
    } catch (err) {
      const reason = this.clean(`cannot connect to MQTT broker ${this.broker}: ${(err as Error).message}`);
      this.log.warn('broker connection failed', { broker: this.broker, error: reason });
      return items.map((item, i) => topics[i].outcome ?? { iccid: item.iccid, status: 'retryable', reason });
    }
    const work = items.map((item, i) => ({ item, ...topics[i] }));
    return mapPoolByKey(
      work,
      (w) => w.state ?? w.item.iccid,
      Math.max(1, Math.floor(this.config.concurrency / 2)),
      ({ item, state, changes, outcome }) =>
        outcome ? Promise.resolve(outcome) : this.publishOne(connection, item, state!, changes!, signal)
    );
  }

  /** Each event as one QoS 1 message, not retained, on the SIM's events topic; ok once all were acknowledged. */
  async publishEvents(items: EventItem[], signal?: AbortSignal, context?: PublishContext): Promise<PublishOutcome[]> {
    const topics = items.map((item) => this.topicsFor(item, context, true));
    let connection: Connection;
    try {
      connection = await this.connect();
    } catch (err) {
      const reason = this.clean(`cannot connect to MQTT broker ${this.broker}: ${(err as Error).message}`);
      return items.map((item, i) => topics[i].outcome ?? { iccid: item.iccid, status: 'retryable', reason });
    }
    return mapPoolByKey(
      items.map((item, i) => ({ item, ...topics[i] })),
      (w) => w.events ?? w.item.iccid,
      Math.max(1, Math.floor(this.config.concurrency / 2)),
      ({ item, events, outcome }) =>
        outcome
          ? Promise.resolve(outcome)
          : this.send(
              connection,
              item,
              item.events.map((event) => ({ topic: events!, payload: JSON.stringify(event), retain: false })),
              signal
            )
    );
  }

  /** The SIM's state and changes topics (or events topic), or a permanent outcome when a template cannot be filled. */
  private topicsFor(
    item: Pick<PublishItem, 'iccid' | 'deviceId'>,
    context?: PublishContext,
    forEvents = false
  ): { state?: string; changes?: string; events?: string; outcome?: PublishOutcome } {
    const values: Record<string, string | undefined> = {
      group: context?.group,
      iccid: item.iccid,
      deviceId: item.deviceId,
    };
    let problem: string | undefined;
    const fill = (template: string) =>
      template.replace(/\{(\w+)\}/g, (_, field: string) => {
        const value = values[field];
        if (!value)
          problem ??= `topic template needs {${field}}, but ${field === 'group' ? 'no group context was passed' : 'it is empty'}`;
        else if (TOPIC_VALUE_FORBIDDEN.test(value)) problem ??= `{${field}} value '${value}' contains /, +, # or NUL`;
        return value ?? '';
      });
    const topics = forEvents
      ? { events: fill(this.config.eventsTopicTemplate) }
      : { state: fill(this.config.stateTopicTemplate), changes: fill(this.config.changesTopicTemplate) };
    return problem ? { outcome: { iccid: item.iccid, status: 'permanent', reason: problem } } : topics;
  }

  /** Sends the SIM's state (retained) and its patch; ok once the broker acknowledged both. */
  private publishOne(
    connection: Connection,
    item: PublishItem,
    stateTopic: string,
    changesTopic: string,
    signal?: AbortSignal
  ): Promise<PublishOutcome> {
    return this.send(
      connection,
      item,
      [
        { topic: stateTopic, payload: JSON.stringify(item.state), retain: this.config.retain },
        { topic: changesTopic, payload: JSON.stringify(item.patch), retain: false },
      ],
      signal
    );
  }

  /** Sends one SIM's messages at QoS 1; ok once the broker acknowledged every one. */
  private async send(
    connection: Connection,
    item: { iccid: string },
    messages: { topic: string; payload: string; retain: boolean }[],
    signal?: AbortSignal
  ): Promise<PublishOutcome> {
    try {
      await this.rate.take(messages.length, signal);
    } catch {
      return abortedOutcome(item);
    }
    if (!connection.client.connected) return this.retryable(item, 'connection to the broker was lost');
    const properties = this.config.protocolVersion === 5 ? { contentType: 'application/json' } : undefined;
    const sent = Promise.all(
      messages.map(({ topic, payload, retain }) =>
        connection.client.publishAsync(topic, payload, { qos: 1, retain, properties })
      )
    );
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new PubackTimeout()), this.config.timeoutMs);
    });
    try {
      await Promise.race([sent, connection.closed, timeout]);
      return { iccid: item.iccid, status: 'ok' };
    } catch (err) {
      // Without a PUBACK the message sits in the client's queue; dropping the connection discards it.
      if (err instanceof PubackTimeout) this.drop(connection);
      return this.retryable(item, (err as Error).message);
    } finally {
      clearTimeout(timer);
      sent.catch(() => undefined);
    }
  }

  private retryable(item: { iccid: string }, why: string): PublishOutcome {
    return { iccid: item.iccid, status: 'retryable', reason: this.clean(`MQTT publish to ${this.broker}: ${why}`) };
  }

  /** The shared connection, opened on first use and again after it closed. */
  private connect(): Promise<Connection> {
    this.connection ??= this.open().catch((err: unknown) => {
      this.connection = undefined;
      throw err;
    });
    return this.connection;
  }

  private open(): Promise<Connection> {
    const { config } = this;
    const options: IClientOptions = {
      clientId: config.clientId ?? `kite-cc-${config.name}-${Math.random().toString(16).slice(2, 10)}`,
      username: config.username,
      password: config.password,
      protocolVersion: config.protocolVersion,
      clean: true,
      reconnectPeriod: 0,
      connectTimeout: config.timeoutMs,
      ca: config.ca,
    };
    const client = mqtt.connect(config.url, options);
    this.activeClient = client;
    let lastError: Error | undefined;
    client.on('error', (err) => {
      lastError = err;
      this.log.warn('MQTT client error', { broker: this.broker, error: this.clean(err.message) });
    });
    const closed = new Promise<never>((_, reject) =>
      client.once('close', () => reject(new Error(`connection closed${lastError ? `: ${lastError.message}` : ''}`)))
    );
    closed.catch(() => {
      if (this.activeClient !== client) return;
      this.activeClient = undefined;
      this.connection = undefined;
    });
    return new Promise<Connection>((resolve, reject) => {
      client.once('connect', () => {
        // Each message goes out when its budget lets it: Nagle's algorithm would hold small writes back until the
        // broker acknowledged earlier ones, and send them in a bunch above the rate.
        (client.stream as Partial<Socket>).setNoDelay?.(true);
        resolve({ client, closed });
      });
      closed.catch((err: Error) => reject(lastError ?? err));
    });
  }

  private drop(connection: Connection): void {
    connection.client.end(true);
  }

  private clean(text: string): string {
    return scrub(redact(text), [this.config.password]);
  }

  async close(): Promise<void> {
    const pending = this.connection;
    this.connection = undefined;
    this.activeClient = undefined;
    const connection = await pending?.catch(() => undefined);
    if (!connection) return;
    // A graceful end waits for in-flight PUBACKs; a broker that never answers must not hold close() forever.
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise((resolve) => (timer = setTimeout(resolve, this.config.timeoutMs)));
    await Promise.race([connection.client.endAsync(), deadline]);
    clearTimeout(timer);
    connection.client.end(true);
  }
}

class PubackTimeout extends Error {
  constructor() {
    super('no PUBACK in time; the connection was dropped so the message cannot be replayed out of order');
  }
}

/** The broker as a rate-budget peer: its host and port, and the user the connector logs in as. */
export function mqttBrokerPeer(config: Pick<MqttTargetConfig, 'url' | 'username'>): string {
  return peerId('mqtt', new URL(config.url).host, config.username ?? '');
}

export function createMqttTarget(config: MqttTargetConfig, deps: MqttTargetDeps = {}): MqttTarget {
  return new MqttTarget(config, deps);
}
