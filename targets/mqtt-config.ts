/** Settings of an MQTT target (targets/mqtt.ts): one retained QoS 1 JSON message per SIM and change. */
import { z } from 'zod';
import { strictSettings } from '../shared/settings';
import { commonTargetShape, flag, intIn, matching, pem, text, url } from './schema';

export const MQTT_DEFAULTS = {
  topicTemplate: 'kite/{group}/{iccid}/reported',
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
    return 'must contain {iccid} or {deviceId}, or every SIM would share one retained topic';
  }
  if (/[+#\0]/.test(template)) return 'must not contain the wildcards + or #';
  return undefined;
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
   * Topic per SIM. Placeholders: `{group}`, `{iccid}`, `{deviceId}`. Substituted values may not contain
   * `/`, `+`, `#`.
   * @default 'kite/{group}/{iccid}/reported'
   */
  topicTemplate: text()
    .default(MQTT_DEFAULTS.topicTemplate)
    .superRefine((template, ctx) => {
      const problem = topicTemplateProblem(template);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    }),
  /** Publish retained, so that a late subscriber gets the latest message per SIM. @default true */
  retain: flag().default(MQTT_DEFAULTS.retain),
  /** MQTT protocol version: 4 (3.1.1) or 5. @default 4 */
  protocolVersion: intIn(4, 5)
    .default(MQTT_DEFAULTS.protocolVersion)
    .transform((v) => v as 4 | 5),
  /** Publishes awaiting PUBACK at once. @default 20 (Mosquitto's default max_inflight_messages) */
  concurrency: intIn(1, 65_535).default(MQTT_DEFAULTS.concurrency),
  /** Publishes started per second. @default 500 */
  requestsPerSecond: intIn(1, 100_000).default(MQTT_DEFAULTS.requestsPerSecond),
  /** Publishes allowed at once after a quiet spell (the bucket's burst); shared, like the rate, by every worker. @default 1 */
  burst: intIn(1, 100_000).default(1),
  /** Time allowed to connect, and for each PUBACK, in ms. @default 10000 */
  timeoutMs: intIn(100, 300_000).default(MQTT_DEFAULTS.timeoutMs),
  /** Extra trusted CA certificate(s), PEM, for `mqtts:`/`wss:`. @default undefined: system trust store */
  ca: pem().optional(),
});

/** Any MQTT broker: one retained QoS 1 JSON message per SIM and change. */
export type MqttTargetConfig = z.output<typeof mqttTargetSchema>;
