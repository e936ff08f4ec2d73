import { AzureIotHubDouble } from '../azure-double';
import { createAzureTarget, parseAzureTargetConfig } from '../../targets/azure';
import type { PublishItem, Target } from '../../targets/target';
import { createLogger } from '../../shared/log';

let hub: AzureIotHubDouble;
beforeAll(async () => {
  hub = await AzureIotHubDouble.start();
});
afterAll(async () => {
  await hub.stop();
});

const logLines: string[] = [];
function target(extra: Record<string, unknown> = {}): Target {
  const config = parseAzureTargetConfig(
    {
      connectionString: hub.serviceConnectionString,
      serviceUrl: hub.serviceUrl,
      deviceHost: hub.deviceHost,
      ca: hub.ca,
      ...extra,
    },
    'azure'
  );
  return createAzureTarget(config, { logger: createLogger({}, { level: 'debug', write: (l) => logLines.push(l) }) });
}

function item(iccid: string, patch: PublishItem['patch'], full = true): PublishItem {
  return { iccid, deviceId: iccid, patch, full };
}

test('smoke', async () => {
  const t = target();
  const out = await t.publish([item('8901', { iccid: '8901', presenceLevel: 'ONLINE' })]);
  expect(out).toEqual([{ iccid: '8901', status: 'ok' }]);
  expect(hub.reported('8901')).toEqual({ iccid: '8901', presenceLevel: 'ONLINE' });
  await t.close();
});
