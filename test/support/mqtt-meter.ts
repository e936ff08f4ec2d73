/**
 * A meter at the broker's door: a TCP proxy, in a process of its own, between the workers and the MQTT broker. It
 * timestamps every PUBLISH the clients send, as the broker receives it, so a rate figure is what the peer sees.
 * A subscriber's arrival times are not: they add the broker's delivery and the subscriber's own event loop, which
 * in a busy test process bunch arrivals (the soak saw 582 in one second from a publisher paced at 500/s).
 *
 * Parent side: `startMqttMeter(brokerUrl)`; the proxy runs this same file as its main module.
 */
import net from 'node:net';
import mqttPacket from 'mqtt-packet';
import { serveMeter, startMeterProcess, type MeterStall } from './meter-process';

export interface MqttMeter {
  /** `mqtt://127.0.0.1:<port>`: give it to the publishers instead of the broker's URL. */
  url: string;
  /** When (epoch ms) each PUBLISH whose topic starts with `topicPrefix` reached the proxy, in order. */
  publishTimes(topicPrefix?: string): Promise<number[]>;
  /** The meter's own stalls so far: PUBLISHes that arrived during one were timestamped up to that late. */
  stalls(): Promise<MeterStall[]>;
  close(): Promise<void>;
}

type Report = { times: [number, string][] };
type ParserSettings = { settings: { protocolVersion: number } };

/** Starts the proxy process in front of `brokerUrl` (mqtt://host:port); resolves once it listens. */
export async function startMqttMeter(brokerUrl: string): Promise<MqttMeter> {
  const broker = new URL(brokerUrl);
  const meter = await startMeterProcess<Report>(__filename, {
    MQTT_METER_BROKER: `${broker.hostname}:${broker.port || 1883}`,
  });
  return {
    url: `mqtt://127.0.0.1:${meter.port}`,
    publishTimes: async (topicPrefix = '') =>
      (await meter.report()).times.filter(([, topic]) => topic.startsWith(topicPrefix)).map(([at]) => at),
    stalls: async () => (await meter.report()).stalls,
    close: () => meter.close(),
  };
}

/** The proxy: each client connection piped to the broker, the client's bytes parsed for PUBLISH packets. */
function runProxy(): void {
  const [host, port] = process.env.MQTT_METER_BROKER!.split(':');
  const times: [number, string][] = [];
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(port), host);
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    parser.on('packet', (packet) => {
      if (packet.cmd === 'publish') times.push([Date.now(), packet.topic]);
      // The CONNECT packet says which protocol the rest is in (v5 packets carry properties).
      if (packet.cmd === 'connect') (parser as unknown as ParserSettings).settings.protocolVersion = packet.protocolVersion ?? 4; // prettier-ignore
    });
    client.on('data', (chunk: Buffer) => {
      upstream.write(chunk);
      parser.parse(chunk);
    });
    upstream.pipe(client);
    const end = () => (client.destroy(), upstream.destroy());
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  server.listen(0, '127.0.0.1', () => serveMeter(server, () => ({ times }) satisfies Report));
}

if (require.main === module) runProxy();
