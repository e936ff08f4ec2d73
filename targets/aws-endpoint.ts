/**
 * The AWS target's endpoints, checked at worker start: a shadow endpoint or control endpoint of another region
 * than `region`, or a shadow endpoint that is not the account's own (DescribeEndpoint `iot:Data-ATS`), is a
 * configuration error naming the setting, not a stream of failed (or misdirected) publishes later. Without an
 * `endpoint`, the account's own is asked of DescribeEndpoint. Endpoints that are not AWS hosts (a local test
 * peer) are taken as given.
 */
import { DescribeEndpointCommand, type IoTClient } from '@aws-sdk/client-iot';
import { ConfigError } from '../shared/config-error';
import type { AwsTargetConfig } from './aws-config';

/** `<prefix>.iot.<region>.amazonaws.com[.cn]` (data: `data-ats.` or `<account>-ats.`; control: none). */
const AWS_IOT_HOST = /^(?:([a-z0-9-]+)\.)?iot\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$/;

/** The region of an AWS IoT endpoint URL, or undefined when it is not an AWS host. */
export function endpointRegion(url: string): string | undefined {
  return AWS_IOT_HOST.exec(new URL(url).hostname)?.[2];
}

/**
 * Checks the configured endpoints against `region` and the account, and returns the shadow endpoint to use
 * (the configured one, or the account's from DescribeEndpoint). Throws ConfigError naming the setting.
 */
export async function resolveAwsEndpoint(
  config: Pick<AwsTargetConfig, 'name' | 'region' | 'endpoint' | 'controlEndpoint'>,
  iot: Pick<IoTClient, 'send'>,
  signal?: AbortSignal
): Promise<string | undefined> {
  const setting = (key: string) => `targets.${config.name}.${key}`;
  for (const key of ['endpoint', 'controlEndpoint'] as const) {
    const url = config[key];
    const region = url && endpointRegion(url);
    if (region && region !== config.region) {
      throw new ConfigError(
        setting(key),
        `is an AWS IoT endpoint of region ${region}, but ${setting('region')} is ${config.region}: use the endpoint of ${config.region} (aws iot describe-endpoint --endpoint-type iot:Data-ATS --region ${config.region}) or fix the region`
      );
    }
  }
  const configured = config.endpoint;
  if (configured && !endpointRegion(configured)) return configured; // a local peer: nothing to compare with
  let address: string | undefined;
  try {
    const answer = await iot.send(new DescribeEndpointCommand({ endpointType: 'iot:Data-ATS' }), {
      abortSignal: signal,
    });
    address = answer.endpointAddress;
  } catch (err) {
    if (configured) return configured; // cannot compare (no permission, no network): the publishes will tell
    throw new ConfigError(
      setting('endpoint'),
      `is not set, and AWS IoT DescribeEndpoint failed (${(err as Error).name ?? 'Error'}): set it to the account's iot:Data-ATS endpoint (aws iot describe-endpoint --endpoint-type iot:Data-ATS --region ${config.region})`
    );
  }
  if (!address) {
    if (configured) return configured;
    throw new ConfigError(setting('endpoint'), 'is not set, and DescribeEndpoint answered no address: set it');
  }
  const discovered = `https://${address}`;
  if (configured && new URL(configured).hostname !== address) {
    throw new ConfigError(
      setting('endpoint'),
      `is not this account's iot:Data-ATS endpoint in ${config.region} (DescribeEndpoint answers another host): use the one describe-endpoint shows, or leave the setting out to use it`
    );
  }
  return configured ?? discovered;
}
