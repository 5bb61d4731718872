import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import mqttPacket, { type Packet } from 'mqtt-packet'
import net from 'node:net'
import type { TestContext } from 'node:test'
import type { Broker } from '../../core/index.js'
import { portOf, urlOf } from './broker.js'
import { defer, once } from './lifecycle.js'

// MQTT clients: MQTT.js (connect, collect) and raw bytes on a socket (RawClient) for packets no client library sends.

const inboxes = new WeakMap<MqttClient, Inbox>()

/**
 * An MQTT.js client, connected, ended after the test. Its inbox collects from the
 * first packet on, so messages sent right after CONNACK are not missed.
 */
export async function connect(t: TestContext, broker: Broker, options: IClientOptions = {}, listener = 'tcp'): Promise<MqttClient> {
  const client = mqtt.connect(urlOf(broker, listener), { reconnectPeriod: 0, connectTimeout: 5000, ...options })
  inboxes.set(client, makeInbox(client))
  defer(t, () => client.endAsync(true).catch(() => {}))
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve())
    client.once('error', reject)
    client.once('close', () => reject(new Error('closed before CONNACK')))
  })
  return client
}

export interface Received {
  topic: string
  payload: Buffer
  packet: mqttPacket.IPublishPacket
}

export interface Inbox {
  messages: Received[]
  next(timeoutMs?: number): Promise<Received>
  count(n: number, timeoutMs?: number): Promise<Received[]>
}

/** The messages arriving on `client`; `next()` waits for the next one. */
export function collect(client: MqttClient): Inbox {
  let inbox = inboxes.get(client)
  if (!inbox) {
    inbox = makeInbox(client)
    inboxes.set(client, inbox)
  }
  return inbox
}

function makeInbox(client: MqttClient): Inbox {
  const messages: Received[] = []
  let waiters: Array<() => void> = []
  let read = 0
  client.on('message', (topic, payload, packet) => {
    messages.push({ topic, payload, packet })
    const w = waiters
    waiters = []
    for (const fn of w) fn()
  })
  const waitUntil = (cond: () => boolean, timeoutMs: number, what: string): Promise<void> =>
    new Promise((resolve, reject) => {
      if (cond()) return resolve()
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what} (have ${messages.length})`)), timeoutMs)
      const check = (): void => {
        if (cond()) {
          clearTimeout(timer)
          resolve()
        } else waiters.push(check)
      }
      waiters.push(check)
    })
  return {
    messages,
    async next(timeoutMs = 3000) {
      await waitUntil(() => messages.length > read, timeoutMs, 'a message')
      return messages[read++]!
    },
    async count(n, timeoutMs = 5000) {
      await waitUntil(() => messages.length >= n, timeoutMs, `${n} messages`)
      read = n
      return messages.slice(0, n)
    },
  }
}

/** Expects no message on `client` while `action` runs and the broker settles (a ping round trip). */
export async function pingRoundTrip(client: MqttClient): Promise<void> {
  // a PINGREQ is answered after every packet sent before it: a barrier, not a sleep
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no PINGRESP')), 3000)
    client.once('packetreceive', function onPacket(p: Packet) {
      if (p.cmd === 'pingresp') {
        clearTimeout(timer)
        resolve()
      } else client.once('packetreceive', onPacket)
    })
    ;(client as unknown as { _sendPacket(p: Packet, cb: () => void): void })._sendPacket({ cmd: 'pingreq' }, () => {})
  })
}

/** A raw TCP connection speaking MQTT through mqtt-packet, for edge cases clients will not send. */
export class RawClient {
  readonly packets: Packet[] = []
  closed = false
  private waiters: Array<() => void> = []
  private readonly parser: ReturnType<typeof mqttPacket.parser>

  private constructor(
    readonly socket: net.Socket,
    protocolVersion: 3 | 4 | 5,
  ) {
    this.parser = mqttPacket.parser({ protocolVersion })
    this.parser.on('packet', (p: Packet) => {
      this.packets.push(p)
      this.wake()
    })
    socket.on('data', (b: Buffer) => this.parser.parse(b))
    socket.on('close', () => {
      this.closed = true
      this.wake()
    })
    socket.on('error', () => {})
  }

  static async open(t: TestContext, broker: Broker, protocolVersion: 3 | 4 | 5 = 4): Promise<RawClient> {
    const socket = net.connect(portOf(broker), '127.0.0.1')
    await once(socket, 'connect')
    const raw = new RawClient(socket, protocolVersion)
    defer(t, () => socket.destroy())
    return raw
  }

  send(packet: Packet, protocolVersion: 3 | 4 | 5 = 4): void {
    this.socket.write(mqttPacket.generate(packet, { protocolVersion }))
  }

  sendBytes(bytes: number[] | Buffer): void {
    this.socket.write(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes))
  }

  private wake(): void {
    const w = this.waiters
    this.waiters = []
    for (const fn of w) fn()
  }

  private until(cond: () => boolean, ms: number, what: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}; got ${this.packets.map((p) => p.cmd).join(',')}`)), ms)
      const check = (): void => {
        if (cond()) {
          clearTimeout(timer)
          resolve()
        } else this.waiters.push(check)
      }
      check()
    })
  }

  /** Waits for the next packet of kind `cmd` (consuming it). */
  async expect<C extends Packet['cmd']>(cmd: C, ms = 3000): Promise<Extract<Packet, { cmd: C }>> {
    await this.until(() => this.packets.some((p) => p.cmd === cmd), ms, cmd)
    const i = this.packets.findIndex((p) => p.cmd === cmd)
    return this.packets.splice(i, 1)[0] as Extract<Packet, { cmd: C }>
  }

  /** Waits for the server to close the connection. */
  async expectClosed(ms = 3000): Promise<void> {
    await this.until(() => this.closed, ms, 'close')
  }

  async connect(options: Partial<mqttPacket.IConnectPacket> = {}, protocolVersion: 3 | 4 | 5 = 4): Promise<mqttPacket.IConnackPacket> {
    this.send(
      {
        cmd: 'connect',
        protocolId: protocolVersion === 3 ? 'MQIsdp' : 'MQTT',
        protocolVersion,
        clientId: 'raw-' + Math.random().toString(36).slice(2),
        clean: true,
        keepalive: 30,
        ...options,
      },
      protocolVersion,
    )
    return this.expect('connack')
  }
}

/** Publishes at QoS 1 and answers the PUBACK reason code (one publish in flight at a time). */
export function publishCode(client: MqttClient, topic: string, payload = 'x', options: { retain?: boolean } = {}): Promise<number> {
  return new Promise((resolve) => {
    const on = (p: { cmd: string; reasonCode?: number }): void => {
      if (p.cmd !== 'puback') return
      client.off('packetreceive', on)
      resolve(p.reasonCode ?? 0)
    }
    client.on('packetreceive', on)
    client.publish(topic, payload, { qos: 1, retain: options.retain ?? false }, () => {})
  })
}
