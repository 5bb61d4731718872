import assert from 'node:assert/strict'
import { test } from 'node:test'
import { newMessage } from '../../core/index.js'
import { ByteQueue, JsonWriter } from '../../plugins/webhook/byte-queue.js'
import { messageJson } from '../../plugins/webhook/message-json.js'

// The in-memory outbox writes request bodies straight from its bytes; they must
// be exactly the JSON the string path (and JSON.parse) agrees on.

const topics = ['a/b', 'quote"back\\slash', 'ctl\u0001\n\t\r\b\f/x', 'ünïcødé/温度/🌡', 'x'.repeat(300)]
const payloads = [0, 1, 2, 3, 4, 64, 1000, 5000].map((n) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 37) & 255)))

test('shiftInto writes byte for byte what messageJson (the durable outbox) makes, for awkward topics, client ids, payloads and properties', () => {
  const b = new ByteQueue()
  const expected: string[] = []
  let ids = 0
  let n = 0
  for (const topic of topics) {
    for (const payload of payloads) {
      const props = n % 3 === 0 ? { contentType: 'text/"plain"', userProperties: { k: 'v\u0002' }, correlationData: Buffer.from('cd') } : undefined
      const m = newMessage(topic, payload, (n % 3) as 0 | 1 | 2, n % 2 === 0, 'c', props)
      const client = n % 4 === 0 ? null : `client-"${n}"-ü`
      expected.push(messageJson(`id-${ids++}`, 1_700_000_000_000 + n, client, m))
      b.pushMessage(m, client, 1_700_000_000_000 + n)
      n++
    }
  }
  expected.push(JSON.stringify({ id: 'e1', event: 'clientConnected', clientId: 'ü' }))
  b.pushJson(expected[expected.length - 1]!)
  let ids2 = 0
  const w = new JsonWriter(16) // starts tiny: it has to grow
  let count = 0
  while (b.shiftInto(w, () => `id-${ids2++}`)) {
    count++
    if (b.length > 0) w.ascii(',')
  }
  const body = w.take().toString('utf8')
  assert.equal(count, expected.length)
  assert.equal(body, expected.join(','))
  const parsed = JSON.parse(`[${body}]`) as Array<{ topic?: string; payload?: string }>
  assert.equal(parsed[1]!.topic, topics[0])
  assert.equal(Buffer.from(parsed[5]!.payload!, 'base64').length, 64)
  assert.equal(parsed.filter((d) => d.topic === topics[2]).length, payloads.length)
})
