// hookmq as a bench subject: `node serve-hookmq.js <port> [json options]`.
import { createBroker } from '../plugins/index.js'
import { collectOnSignal } from './collect.js'

collectOnSignal() // SIGUSR2 (brokers.ts collectedRss)

const port = Number(process.argv[2])
const options = JSON.parse(process.argv[3] ?? '{}') as Record<string, unknown>
const broker = createBroker({ port, ws: false, sys: { enabled: false }, log: { level: 'warn' }, limits: { maxQueuedMessages: 1000000 }, ...options })
await broker.listen()
process.on('SIGTERM', () => void broker.close().then(() => process.exit(0)))
