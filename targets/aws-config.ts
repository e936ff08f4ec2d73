/** Settings of an AWS IoT Core target (targets/aws.ts): CreateThing in the registry, then UpdateThingShadow. */
import { z } from 'zod';
import { strictSettings } from '../shared/settings';
import { commonTargetShape, flag, intIn, matching, text, url } from './schema';

export const AWS_DEFAULTS = {
  createThings: true,
  concurrency: 16,
  requestsPerSecond: 50,
  burst: 1,
  thingsPerSecond: 10,
  maxAttempts: 1,
  timeoutMs: 10_000,
  eventsTopicTemplate: 'kite/{group}/{iccid}/events',
} as const;

/** Static AWS credentials. Secret: never logged, never echoed in errors. */
const awsCredentialsSchema = strictSettings({
  /** Access key id. Secret. Required. */
  accessKeyId: text(),
  /** Secret access key. Secret. Required. */
  secretAccessKey: text(),
  /** For temporary credentials. Secret. @default undefined */
  sessionToken: text().optional(),
});

export const awsTargetSchema = strictSettings({
  type: z.literal('aws'),
  ...commonTargetShape,
  /** AWS region, e.g. `eu-west-1`. Required. */
  region: matching(
    /^[a-z]{2}(-[a-z]+)+-\d+$/,
    'an AWS region such as "eu-west-1"',
    'an AWS region such as "eu-west-1"'
  ),
  /**
   * Data-plane (shadow) endpoint. Production should use the account's own ATS endpoint
   * (`aws iot describe-endpoint --endpoint-type iot:Data-ATS`), e.g. `https://abc123-ats.iot.eu-west-1.amazonaws.com`.
   * Checked at worker start: its region must be `region`, and DescribeEndpoint must agree (else exit 2).
   * @default the account's own, from DescribeEndpoint (`iot:Data-ATS`) at worker start
   */
  endpoint: url(['https:', 'http:']).optional(),
  /** Control-plane (registry, CreateThing) endpoint. @default the SDK's regional default */
  controlEndpoint: url(['https:', 'http:']).optional(),
  /** Static credentials. @default undefined: the SDK's default provider chain (env, profile, role) */
  credentials: awsCredentialsSchema.optional(),
  /**
   * Named shadow to write, `[$a-zA-Z0-9:_-]{1,64}`. Each named shadow has its own 8 KB limit.
   * @default undefined: the classic (unnamed) shadow
   */
  /**
   * MQTT topic of a SIM's connectivity events (iot-data Publish, QoS 1, one message per event). Placeholders
   * `{group}`, `{iccid}`, `{deviceId}`; no wildcards, not starting with `$`.
   * @default 'kite/{group}/{iccid}/events'
   */
  eventsTopicTemplate: matching(/^(?!\$)[^+#\0]{1,256}$/, 'an MQTT topic without + or #, not starting with $')
    .refine((t) => /\{(iccid|deviceId)\}/.test(t), 'must contain {iccid} or {deviceId}')
    .default(AWS_DEFAULTS.eventsTopicTemplate),
  shadowName: matching(/^[$a-zA-Z0-9:_-]{1,64}$/, '[$a-zA-Z0-9:_-]{1,64}').optional(),
  /** Register each SIM as a thing (CreateThing, identity fields as attributes) before its first shadow update. @default true */
  createThings: flag().default(AWS_DEFAULTS.createThings),
  /** Shadow updates in flight at once, 1..1000. @default 16 */
  concurrency: intIn(1, 1000).default(AWS_DEFAULTS.concurrency),
  /** Shadow updates started per second (check the account's shadow TPS quota for the region). @default 50 */
  requestsPerSecond: intIn(1, 100_000).default(AWS_DEFAULTS.requestsPerSecond),
  /** Shadow updates allowed at once after a quiet spell (the bucket's burst); shared, like the rate, by every worker. @default 1 */
  burst: intIn(1, 100_000).default(AWS_DEFAULTS.burst),
  /** CreateThing calls per second; AWS allows 15 TPS per account. @default 10 */
  thingsPerSecond: intIn(1, 1000).default(AWS_DEFAULTS.thingsPerSecond),
  /**
   * Attempts per request within one publish call, the SDK's own retries on 429 and 5xx included, 1..10. Each try
   * more multiplies Temporal's attempts of the publish activity, which already retry the SIM (after AWS's
   * Retry-After). @default 1: the publish activity and Temporal are the one retry layer
   */
  maxAttempts: intIn(1, 10).default(AWS_DEFAULTS.maxAttempts),
  /** Per-request timeout in ms, 100..300000. @default 10000 */
  timeoutMs: intIn(100, 300_000).default(AWS_DEFAULTS.timeoutMs),
});

export type AwsCredentialsConfig = z.output<typeof awsCredentialsSchema>;
/** AWS IoT Core: CreateThing in the registry, then UpdateThingShadow `{"state":{"reported":patch}}`. */
export type AwsTargetConfig = z.output<typeof awsTargetSchema>;
