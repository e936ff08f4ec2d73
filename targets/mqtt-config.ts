/**
 * Settings of an MQTT target (targets/mqtt.ts): per SIM and change, its whole record retained on a state topic
 * and the patch on a changes topic, both QoS 1 JSON.
 */
import { z } from 'zod';
import { strictSettings } from '../shared/settings';
import { commonTargetShape, flag, intIn, matching, pem, text, url } from './schema';

export const MQTT_DEFAULTS = {
  stateTopicTemplate: 'kite/{group}/{iccid}/reported',
  changesTopicTemplate: 'kite/{group}/{iccid}/changes',
  eventsTopicTemplate: 'kite/{group}/{iccid}/events',
  retain: true,
  protocolVersion: 4,
  concurrency: 20,
  requestsPerSecond: 500,
  timeoutMs: 10_000,
} as const;

const TOPIC_FIELDS = ['group', 'iccid', 'deviceId'];

/** Why a topic template is unusable, or undefined. */
function topicTemplateProblem(template: string): string | undefined {
  const fields = [...template.matchAll(/\{([^{}]*)\}/g)].map((m) => m[1]);
  const unknown = fields.find((f) => !TOPIC_FIELDS.includes(f));
  if (unknown !== undefined) return `unknown placeholder {${unknown}} (allowed: ${TOPIC_FIELDS.join(', ')})`;
  if (!fields.includes('iccid') && !fields.includes('deviceId')) {
    return 'must contain {iccid} or {deviceId}, or every SIM would share one topic';
  }
  if (/[+#\0]/.test(template)) return 'must not contain the wildcards + or #';
  return undefined;
}

function topicTemplate(fallback: string) {
  return text()
    .default(fallback)
    .superRefine((template, ctx) => {
      const problem = topicTemplateProblem(template);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    });
}

export const mqttTargetSchema = strictSettings({
  type: z.literal('mqtt'),
  ...commonTargetShape,
  /** Broker URL: `mqtt://`, `mqtts://`, `ws://` or `wss://`. Must not carry a password (use `password`). Required. */
  url: url(['mqtt:', 'mqtts:', 'ws:', 'wss:'], 'password'),
  /** @default undefined */
  username: text().optional(),
  /** Secret. @default undefined */
  password: text().optional(),
  /** MQTT client id, printable ASCII. Two connectors must not share one. @default `kite-cc-<name>-<random>` */
  clientId: matching(/^[\x21-\x7e]{1,128}$/, 'printable ASCII without spaces').optional(),
  /**
   * Topic of a SIM's state: its whole current record (every key it has, never `null`), published on each change,
   * retained (see `retain`) so that a subscriber joining at any time gets every SIM's full state at once.
   * Placeholders: `{group}`, `{iccid}`, `{deviceId}`; substituted values may not contain `/`, `+`, `#`.
   * @default 'kite/{group}/{iccid}/reported'
   */
  stateTopicTemplate: topicTemplate(MQTT_DEFAULTS.stateTopicTemplate),
  /**
   * Topic of a SIM's changes: the patch of each change (changed keys, `null` for a key that disappeared; the whole
   * record on a SIM's first publish), never retained. Same placeholders; must differ from `stateTopicTemplate`.
   * @default 'kite/{group}/{iccid}/changes'
   */
  changesTopicTemplate: topicTemplate(MQTT_DEFAULTS.changesTopicTemplate),
  /**
   * Topic of a SIM's connectivity events (when the group has events on): one JSON message per event, QoS 1, never
   * retained. Same placeholders; must differ from the other two templates.
   * @default 'kite/{group}/{iccid}/events'
   */
  eventsTopicTemplate: topicTemplate(MQTT_DEFAULTS.eventsTopicTemplate),
  /** Retain the state messages, so that a late subscriber gets each SIM's state. @default true */
  retain: flag().default(MQTT_DEFAULTS.retain),
  /** MQTT protocol version: 4 (3.1.1) or 5. @default 4 */
  protocolVersion: intIn(4, 5)
    .default(MQTT_DEFAULTS.protocolVersion)
    .transform((v) => v as 4 | 5),
  /**
   * Messages awaiting PUBACK at once; each SIM sends two (state and changes), so half as many SIMs are in flight.
   * @default 20 (Mosquitto's default max_inflight_messages)
   */
  concurrency: intIn(1, 65_535).default(MQTT_DEFAULTS.concurrency),
  /** Messages started per second (two per SIM). @default 500 */
  requestsPerSecond: intIn(1, 100_000).default(MQTT_DEFAULTS.requestsPerSecond),
  /** Publishes allowed at once after a quiet spell (the bucket's burst); shared, like the rate, by every worker. @default 1 */
  burst: intIn(1, 100_000).default(1),
  /** Time allowed to connect, and for each PUBACK, in ms. @default 10000 */
  timeoutMs: intIn(100, 300_000).default(MQTT_DEFAULTS.timeoutMs),
  /** Extra trusted CA certificate(s), PEM, for `mqtts:`/`wss:`. @default undefined: system trust store */
  ca: pem().optional(),
}).superRefine((config, ctx) => {
  if (config.stateTopicTemplate === config.changesTopicTemplate) {
    ctx.addIssue({
      code: 'custom',
      path: ['changesTopicTemplate'],
      message: 'must differ from stateTopicTemplate, or patches would overwrite the retained state',
    });
  }
  if (
    config.eventsTopicTemplate === config.stateTopicTemplate ||
    config.eventsTopicTemplate === config.changesTopicTemplate
  ) {
    ctx.addIssue({
      code: 'custom',
      path: ['eventsTopicTemplate'],
      message: 'must differ from stateTopicTemplate and changesTopicTemplate, so that events are not read as state',
    });
  }
});

/** Any MQTT broker: per SIM and change, its retained state and its patch, QoS 1 JSON. */
export type MqttTargetConfig = z.output<typeof mqttTargetSchema>;
