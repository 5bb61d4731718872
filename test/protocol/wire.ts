import assert from 'node:assert/strict'
import type { TestContext } from 'node:test'
import type { Broker } from '../../core/index.js'
import { bystander } from '../bystander.js'
import { RawClient } from '../helpers.js'

// Raw packet bytes for the protocol tests: what no client library will send.

export function varint(n: number): number[] {
  const out: number[] = []
  do {
    let digit = n % 128
    n = Math.floor(n / 128)
    if (n > 0) digit |= 0x80
    out.push(digit)
  } while (n > 0)
  return out
}

/** A control packet: first byte, remaining length, body. */
export function frame(first: number, body: number[]): Buffer {
  return Buffer.from([first, ...varint(body.length), ...body])
}

/** A UTF-8 string field (or raw bytes posing as one): two-byte length, then the bytes. */
export function str(text: string | number[]): number[] {
  const b = typeof text === 'string' ? [...Buffer.from(text)] : text
  return [b.length >> 8, b.length & 0xff, ...b]
}

/** An MQTT 5 properties field. */
export function props(...bytes: number[]): number[] {
  return [...varint(bytes.length), ...bytes]
}

/** A CONNECT; `rest` is the payload after the client id (will, user name, password). */
export function connectBytes(version: 4 | 5, opts: { flags?: number; clientId?: string | number[]; properties?: number[]; rest?: number[] } = {}): Buffer {
  const body = [...str('MQTT'), version, opts.flags ?? 0x02, 0x00, 0x1e]
  if (version === 5) body.push(...(opts.properties ?? props()))
  body.push(...str(opts.clientId ?? 'raw-wire'), ...(opts.rest ?? []))
  return frame(0x10, body)
}

/** A client whose publish/subscribe round trip must survive another client's bad input (promptly: within 2 s). */
export async function bystanders(t: TestContext, broker: Broker): Promise<() => Promise<void>> {
  const other = await bystander(t, broker)
  return async () => {
    await other.roundTrip(2000)
  }
}

/** An MQTT 5 raw client, connected. */
export async function v5(t: TestContext, broker: Broker, clientId?: string): Promise<RawClient> {
  const raw = await RawClient.open(t, broker, 5)
  const ack = await raw.connect(clientId === undefined ? {} : { clientId }, 5)
  assert.equal(ack.reasonCode, 0)
  return raw
}

/** An MQTT 3.1.1 raw client, connected. */
export async function v4(t: TestContext, broker: Broker): Promise<RawClient> {
  const raw = await RawClient.open(t, broker, 4)
  assert.equal((await raw.connect({}, 4)).returnCode, 0)
  return raw
}

/** The MQTT 5 answer to bad input: DISCONNECT with `code`, then the close. */
export async function expectDisconnect(raw: RawClient, code: number): Promise<void> {
  assert.equal((await raw.expect('disconnect')).reasonCode, code)
  await raw.expectClosed()
}

/** The 3.1.1 answer to a bad CONNECT: the connection closes and nothing was sent. */
export async function expectClosedSilently(raw: RawClient): Promise<void> {
  await raw.expectClosed()
  assert.deepEqual(
    raw.packets.map((p) => p.cmd),
    [],
  )
}
