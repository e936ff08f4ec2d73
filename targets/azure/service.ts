/**
 * The service side: `azure-iothub`'s Registry, optionally pointed at another address than `https://<HostName>`.
 *
 * Why the redirect looks like this: the SDK's HTTP layer (dist/common-http/http.js `buildRequest`) always calls
 * `https.request({ host: HostName })` on port 443, so a port in HostName fails. It does, however, pass
 * `options.http.agent` from `setOptions` to every request, and the Registry's (private, typed) constructor takes a
 * RestApiClient, whose constructor takes the Http builder. We give the Registry a RestApiClient whose Http always
 * uses our agent, and the agent opens its sockets to `serviceUrl` while TLS still checks the hub's HostName.
 * Every Registry method, header, SAS and error translation is then the SDK's own code, with no port 443 to bind.
 * Without `serviceUrl`/`ca` the plain `Registry.fromConnectionString` is used.
 */
import https from 'node:https';
import type { Duplex } from 'node:stream';
import { Registry, SharedAccessSignature } from 'azure-iothub';
import { RestApiClient } from 'azure-iothub/dist/common-http/rest_api_client';
import { Http } from 'azure-iothub/dist/common-http/http';
import sdkPackage from 'azure-iothub/package.json';
import type { ServiceCredentials } from './config';

/** An https.Agent that connects to a fixed address but keeps the request's TLS server name. */
class PinnedAgent extends https.Agent {
  constructor(
    private readonly target: URL,
    private readonly serverName: string,
    ca: string | undefined
  ) {
    super({ keepAlive: true, ...(ca ? { ca } : {}) });
  }

  override createConnection(
    options: https.RequestOptions,
    callback?: (err: Error | null, stream: Duplex) => void
  ): Duplex | null | undefined {
    const port = Number(this.target.port || 443);
    const host = this.target.hostname.replace(/^\[|\]$/g, '');
    return super.createConnection({ ...options, host, port, servername: this.serverName }, callback);
  }
}

/** The SDK's Http with our agent (and CA) forced into every options update, including the Registry's own. */
class PinnedHttp extends Http {
  constructor(
    private readonly agent: https.Agent,
    private readonly ca: string | undefined
  ) {
    super();
  }

  override setOptions(options: Record<string, unknown> | undefined): void {
    const http = { ...((options?.http as object | undefined) ?? {}), agent: this.agent };
    super.setOptions({ ...options, http, ...(this.ca ? { ca: this.ca } : {}) });
  }
}

export interface RegistryHandle {
  registry: Registry;
  /** Closes pooled keep-alive sockets. */
  close(): void;
}

/** Builds the Registry for these credentials, redirected when `serviceUrl` or `ca` asks for it. */
export function createRegistry(creds: ServiceCredentials, serviceUrl?: string, ca?: string): RegistryHandle {
  if (!serviceUrl && !ca) {
    const cs = `HostName=${creds.hostName};SharedAccessKeyName=${creds.keyName};SharedAccessKey=${creds.key}`;
    return { registry: Registry.fromConnectionString(cs), close: () => undefined };
  }
  // Same config as Registry.fromConnectionString builds; the SDK extends the SAS expiry on every call.
  const config: Registry.TransportConfig = {
    host: creds.hostName,
    sharedAccessSignature: SharedAccessSignature.create(creds.hostName, creds.keyName, creds.key, Date.now()),
  };
  const agent = new PinnedAgent(new URL(serviceUrl ?? `https://${creds.hostName}`), creds.hostName, ca);
  const client = new RestApiClient(config, `${sdkPackage.name}/${sdkPackage.version}`, new PinnedHttp(agent, ca));
  return { registry: new Registry(config, client), close: () => agent.destroy() };
}
