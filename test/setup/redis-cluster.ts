/**
 * A real Redis Cluster for the tests that must hold on one: three redis-server processes in cluster mode (masters,
 * no replicas, no persistence), joined by `redis-cli --cluster create`. The global setup starts it once per run, or
 * reuses it, like the shared Redis. It needs only redis-server and redis-cli, which scripts/setup.sh installs.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { waitUntil } from '../support/wait-until';
import { portOpen, stop, tempDir, waitForPort } from './processes';

const run = promisify(execFile);

/** The cluster bus of a node listens this far above its port (Redis's own convention). */
const BUS_OFFSET = 10_000;

/** The seed list of a Cluster on `ports` of 127.0.0.1, as KITE_REDIS_URL takes it. */
export function redisClusterUrl(ports: number[]): string {
  return `redis-cluster://${ports.map((port) => `127.0.0.1:${port}`).join(',')}`;
}

/** Whether every node on `ports` answers and says the Cluster is ok with all of them in it. */
export async function redisClusterOk(ports: number[]): Promise<boolean> {
  try {
    const infos = await Promise.all(
      ports.map((port) => run('redis-cli', ['-p', String(port), 'cluster', 'info'], { timeout: 5_000 }))
    );
    return infos.every(
      ({ stdout }) => stdout.includes('cluster_state:ok') && stdout.includes(`cluster_known_nodes:${ports.length}`)
    );
  } catch {
    return false;
  }
}

/**
 * Starts one master per port (at least 3, Redis's minimum; bus ports 10000 above), creates the Cluster and resolves
 * once every node serves it. The caller stops the returned processes.
 */
export async function startRedisCluster(ports: number[]): Promise<ChildProcess[]> {
  const tooHigh = ports.filter((port) => port + BUS_OFFSET > 65_535);
  if (tooHigh.length) {
    throw new Error(
      `Redis Cluster ports ${tooHigh.join(',')} leave no room for their bus ports (${BUS_OFFSET} above, at most ` +
        `65535): set KITE_TEST_REDIS_CLUSTER_PORT (default KITE_TEST_REDIS_PORT + ${BUS_OFFSET}) to at most ` +
        `${65_535 - BUS_OFFSET - ports.length + 1}`
    );
  }
  const children = ports.map((port) =>
    spawn(
      'redis-server',
      [
        ...['--bind', '127.0.0.1', '--port', String(port), '--dir', tempDir('redis-cluster')],
        ...['--save', '', '--appendonly', 'no', '--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf'],
        ...['--cluster-port', String(port + BUS_OFFSET), '--cluster-node-timeout', '5000'],
      ],
      { stdio: 'ignore' }
    )
  );
  try {
    await Promise.all(ports.map((port) => waitForPort(port, 'redis-server (cluster mode)')));
    const nodes = ports.map((port) => `127.0.0.1:${port}`);
    await run('redis-cli', ['--cluster', 'create', ...nodes, '--cluster-replicas', '0', '--cluster-yes'], {
      timeout: 60_000,
    });
    // `create` returns once the slots are assigned; each node says ok once it has met all the others.
    await waitUntil(() => redisClusterOk(ports), `the Redis Cluster on ${nodes.join(',')} is ok`, 60_000);
    return children;
  } catch (err) {
    await Promise.all(children.map((child) => stop(child)));
    throw err;
  }
}

/** Whether something listens on any of `ports` (a Cluster to reuse, or a port taken by something else). */
export async function anyPortOpen(ports: number[]): Promise<boolean> {
  return (await Promise.all(ports.map((port) => portOpen(port)))).some(Boolean);
}
