// Cluster cost per message (issue #14): 1, 2 and 3 hookmq nodes on one Redis;
// publishers on node 0, the subscriber on node 0 (node-local traffic) or on
// node 1 (cross-node); QoS 0 to a clean subscriber and QoS 1 to a persistent one.
// For each: CPU-seconds per million messages of all hookmq nodes together and of
// redis-server, and Redis commands and bytes (in + out) per message.
import { cpuSeconds, startBroker, type BenchRedis, type RunningBroker } from './brokers.js'
import { fanIn } from './scenarios.js'
import { median as med } from './stats.js'

export interface ClusterCostRow {
  nodes: number
  traffic: 'local' | 'cross'
  qos: 0 | 1
  rate: number
  /** CPU-seconds per million messages */
  brokerCpu: number
  redisCpu: number
  commands: number
  bytes: number
}

export async function clusterCost(redis: BenchRedis, reps: number, quick: boolean): Promise<ClusterCostRow[][]> {
  const cases: Array<Pick<ClusterCostRow, 'nodes' | 'traffic' | 'qos'>> = []
  for (const qos of [0, 1] as const)
    for (const nodes of [1, 2, 3])
      for (const traffic of ['local', 'cross'] as const) if (!(traffic === 'cross' && nodes === 1)) cases.push({ nodes, traffic, qos })
  const out = cases.map((): ClusterCostRow[] => [])
  for (let rep = 0; rep < reps; rep++) {
    for (let c = 0; c < cases.length; c++) {
      const { nodes, traffic, qos } = cases[c]!
      await redis.flush()
      const running: RunningBroker[] = []
      try {
        for (let k = 0; k < nodes; k++) running.push(await startBroker('hookmq', { id: `node-${k}`, redis: { url: `redis://127.0.0.1:${redis.port}` } }))
        await new Promise((r) => setTimeout(r, 1500)) // every node has found the others
        // QoS 0 across nodes is not flow-controlled: a reader more than streamMaxLength (100,000) entries behind loses the oldest
        const perPublisher = Math.round((qos === 0 ? 8000 : 4000) * (quick ? 0.1 : 1))
        const cpu0 = running.reduce((s, n) => s + cpuSeconds(n.pid), 0)
        const redis0 = cpuSeconds(redis.pid)
        const stats0 = await redis.stats()
        process.stderr.write(`  cluster cost: ${nodes} node(s), ${traffic}, QoS ${qos} ...\n`)
        const r = await fanIn(running[0]!.port, {
          publishers: 10,
          perPublisher,
          qos,
          payload: 64,
          persistent: qos === 1,
          subPort: traffic === 'cross' ? running[1]!.port : undefined,
        })
        await new Promise((res) => setTimeout(res, 300)) // the last cursor saves
        const stats1 = await redis.stats()
        const perM = 1e6 / r.expected
        out[c]!.push({
          nodes,
          traffic,
          qos,
          rate: r.rate,
          brokerCpu: (running.reduce((s, n) => s + cpuSeconds(n.pid), 0) - cpu0) * perM,
          redisCpu: (cpuSeconds(redis.pid) - redis0) * perM,
          commands: (stats1.total_commands_processed! - stats0.total_commands_processed!) / r.expected,
          bytes: (stats1.total_net_input_bytes! - stats0.total_net_input_bytes! + stats1.total_net_output_bytes! - stats0.total_net_output_bytes!) / r.expected,
        })
      } catch (err) {
        console.log(`  cluster cost: ${nodes} node(s), ${traffic}, QoS ${qos} failed: ${(err as Error).message}`)
      } finally {
        for (const n of running) await n.stop()
      }
    }
  }
  return out
}

export function printClusterCost(name: string, rows: ClusterCostRow[][]): void {
  console.log(`\n${name}`)
  console.log('  nodes traffic qos        msg/s   hookmq CPU-s/M msgs   redis CPU-s/M msgs   Redis cmds/msg   Redis bytes/msg')
  for (const rs of rows) {
    const f = rs[0]
    if (f === undefined) continue
    const spread = (pick: (r: ClusterCostRow) => number, digits: number): string =>
      `${med(rs.map(pick)).toFixed(digits)} [${rs.map((r) => pick(r).toFixed(digits)).join(' ')}]`
    console.log(
      `  ${String(f.nodes).padEnd(5)} ${f.traffic.padEnd(7)} ${String(f.qos).padEnd(3)} ${Math.round(med(rs.map((r) => r.rate)))
        .toLocaleString('en-US')
        .padStart(
          10,
        )}   ${spread((r) => r.brokerCpu, 1).padEnd(20)}  ${spread((r) => r.redisCpu, 1).padEnd(20)} ${spread((r) => r.commands, 2).padEnd(16)} ${spread(
        (r) => r.bytes,
        0,
      )}`,
    )
  }
}
