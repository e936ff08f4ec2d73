/**
 * The targets' public face: configuration, the device id helper, and `createTarget`, which builds the target a
 * configuration names. Each cloud's module is loaded only when a target of that type is created, so a worker
 * that publishes to MQTT alone never loads the AWS or Azure SDKs.
 */
import type { Budgets } from '../shared/limits';
import type { Logger } from '../shared/log';
import type { TargetConfig } from './config';
import type { Target } from './target';
import type * as AwsModule from './aws';
import type * as MqttModule from './mqtt';
import type * as WebhookModule from './webhook';
import type * as NullModule from './null';
import type * as AzureModule from './azure';

export * from './config';
export { deviceIdFor, DeviceIdError, DEVICE_ID_FIELDS, DEFAULT_DEVICE_ID_TEMPLATE } from './device-id';
export type { PublishContext, PublishItem, PublishOutcome, Target } from './target';
export { NullTarget, type NullTargetCounters } from './null';

export interface TargetDeps {
  /** Parent logger; each target adds its name. @default createLogger() */
  logger?: Logger;
  /** Where targets take their peers' rate budgets; the worker shares them in Redis. @default localBudgets() */
  budgets?: Budgets;
}

/* eslint-disable @typescript-eslint/no-require-imports -- lazy loading keeps unused cloud SDKs out of memory */
export function createTarget(config: TargetConfig, deps: TargetDeps = {}): Target {
  switch (config.type) {
    case 'aws':
      return (require('./aws') as typeof AwsModule).createAwsIotTarget(config, deps);
    case 'mqtt':
      return (require('./mqtt') as typeof MqttModule).createMqttTarget(config, deps);
    case 'webhook':
      return (require('./webhook') as typeof WebhookModule).createWebhookTarget(config, deps);
    case 'null':
      return (require('./null') as typeof NullModule).createNullTarget(config);
    case 'azure':
      return (require('./azure') as typeof AzureModule).createAzureTarget(config, deps);
  }
}
/* eslint-enable @typescript-eslint/no-require-imports */
