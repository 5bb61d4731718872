import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { test } from 'node:test'
import { MQTT_PACKET_VERSION, mqtt, ParserBase, readInPlace } from '../../core/mqtt-packet.js'

// core/mqtt-packet.ts relies on mqtt-packet's internals. This fails when the
// installed version is not the one they were read from, or when one of them is
// gone: read the new version's parser.js and writeToStream.js, adapt
// core/mqtt-packet.ts and packet-reader.ts, then move the pin.

const require = createRequire(import.meta.url)
const entry = require.resolve('mqtt-packet')
const installed = (JSON.parse(readFileSync(join(dirname(entry), 'package.json'), 'utf8')) as { version: string }).version
const pinned = (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { dependencies: Record<string, string> }).dependencies[
  'mqtt-packet'
]

test('mqtt-packet is pinned to the version whose internals hookmq relies on', () => {
  assert.equal(pinned, MQTT_PACKET_VERSION, 'package.json must pin mqtt-packet exactly (no range)')
  assert.equal(installed, MQTT_PACKET_VERSION)
})

test('the parser internals packet-reader.ts subclasses are there', () => {
  const proto = ParserBase.prototype as unknown as Record<string, unknown>
  for (const m of ['_parseHeader', '_parseLength', '_parseNum', '_parseString', '_parseConnect', '_parseProperties', '_emitError', 'parse']) {
    assert.equal(typeof proto[m], 'function', `Parser.prototype.${m}`)
  }
  const parser = new ParserBase().parser({ protocolVersion: 4 })
  parser.parse(Buffer.from([0x30, 0x05, 0x00, 0x01, 0x61, 0x62, 0x63])) // a whole PUBLISH
  const p = parser as unknown as Record<string, unknown> & { _list: Record<string, unknown> }
  for (const f of ['_list', '_pos', '_stateCounter', 'packet', 'error', 'settings']) assert.ok(f in p, `parser.${f}`)
  assert.equal(typeof p._pos, 'number')
  assert.ok(Array.isArray(p._list._bufs), 'parser._list._bufs (a BufferList)')
  assert.equal(typeof p._list.readUInt8, 'function')
})

test('the codec tuning applies: number cache off, and parser.js loads its logger through `debug` (which is replaced)', () => {
  assert.equal((mqtt.writeToStream as unknown as { cacheNumbers: boolean }).cacheNumbers, false)
  const parserSource = readFileSync(join(dirname(entry), 'parser.js'), 'utf8')
  assert.match(parserSource, /require\(['"]debug['"]\)/)
})

test('readInPlace: a BufferList reads bytes and 16-bit numbers as bl does, across chunk borders, and throws the same error past the end', () => {
  const bl = require(createRequire(entry).resolve('bl')) as (b?: Buffer) => {
    append(b: Buffer): void
    length: number
    _bufs: Buffer[]
    readUInt8(i: number): number
    readUInt16BE(i: number): number
    slice(a: number, b: number): Buffer
  }
  const bytes = Buffer.from(Array.from({ length: 23 }, (_, i) => (i * 37 + 11) & 0xff))
  for (const cuts of [[], [1], [0, 1, 1, 5], [7, 8, 20], [22]]) {
    const theirs = bl()
    const ours = bl()
    let at = 0
    for (const c of [...cuts, bytes.length]) {
      theirs.append(bytes.subarray(at, c))
      ours.append(bytes.subarray(at, c))
      at = c
    }
    readInPlace(ours)
    assert.notEqual(ours.readUInt8, theirs.readUInt8)
    for (let i = 0; i < bytes.length; i++) assert.equal(ours.readUInt8(i), theirs.readUInt8(i), `byte ${i} with cuts ${cuts.join(',')}`)
    for (let i = 0; i < bytes.length - 1; i++) assert.equal(ours.readUInt16BE(i), theirs.readUInt16BE(i), `uint16 ${i} with cuts ${cuts.join(',')}`)
    for (const [read, at] of [
      ['readUInt8', bytes.length],
      ['readUInt16BE', bytes.length - 1],
      ['readUInt8', -1],
    ] as const) {
      const expected = (() => {
        try {
          theirs[read](at)
          return 'no error'
        } catch (e) {
          return (e as { code?: string }).code
        }
      })()
      assert.throws(
        () => ours[read](at),
        (e: { code?: string }) => e.code === expected,
        `${read}(${at})`,
      )
    }
  }
})
