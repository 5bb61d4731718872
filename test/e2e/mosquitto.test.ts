import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import { test } from 'node:test'
import { promisify } from 'node:util'
import { collect, connect, portOf, startBroker } from '../helpers.js'

// Interoperability with the Mosquitto command-line clients (package mosquitto-clients).
const run = promisify(execFile)

for (const version of ['mqttv311', 'mqttv5'] as const) {
  for (const qos of [0, 1, 2]) {
    test(`mosquitto_pub -V ${version} -q ${qos} → MQTT.js subscriber`, async (t) => {
      const broker = await startBroker(t)
      const sub = await connect(t, broker, { protocolVersion: 5 })
      await sub.subscribeAsync('mosq/in', { qos: 2 })
      await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(portOf(broker)), '-V', version, '-q', String(qos), '-t', 'mosq/in', '-m', `hello ${qos}`])
      const m = await collect(sub).next()
      assert.equal(m.payload.toString(), `hello ${qos}`)
      assert.equal(m.packet.qos, qos)
    })

    test(`MQTT.js publisher → mosquitto_sub -V ${version} -q ${qos}`, async (t) => {
      const broker = await startBroker(t)
      const subscribed = new Promise<void>((resolve) => broker.on('subscribed', () => resolve()))
      const child = spawn('mosquitto_sub', [
        '-h',
        '127.0.0.1',
        '-p',
        String(portOf(broker)),
        '-V',
        version,
        '-q',
        String(qos),
        '-t',
        'mosq/out/#',
        '-C',
        '2',
        '-v',
      ])
      t.after(() => child.kill())
      let out = ''
      child.stdout.on('data', (b: Buffer) => {
        out += b.toString()
      })
      const exited = new Promise<number | null>((resolve) => child.on('exit', resolve))
      await subscribed
      const pub = await connect(t, broker, { protocolVersion: 4 })
      await pub.publishAsync('mosq/out/a', 'first', { qos: qos as 0 | 1 | 2 })
      await pub.publishAsync('mosq/out/b', 'second', { qos: qos as 0 | 1 | 2 })
      assert.equal(await exited, 0)
      assert.equal(out, 'mosq/out/a first\nmosq/out/b second\n')
    })
  }

  test(`mosquitto_sub -V ${version} gets a retained message; mosquitto_pub -r sets it`, async (t) => {
    const broker = await startBroker(t)
    const port = String(portOf(broker))
    await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', port, '-V', version, '-q', '1', '-r', '-t', 'mosq/kept', '-m', 'stays'])
    const { stdout } = await run('mosquitto_sub', ['-h', '127.0.0.1', '-p', port, '-V', version, '-t', 'mosq/#', '-C', '1', '-v', '-W', '5'])
    assert.equal(stdout, 'mosq/kept stays\n')
  })
}

test('mosquitto_sub -V mqttv5 with a persistent session receives QoS 1 messages sent while away', async (t) => {
  const broker = await startBroker(t)
  const port = String(portOf(broker))
  const common = ['-h', '127.0.0.1', '-p', port, '-V', 'mqttv5', '-q', '1', '-i', 'mosq-persist', '-c', '-x', '60', '-t', 'mosq/p']
  await run('mosquitto_sub', [...common, '-E']) // subscribe, then exit
  await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', port, '-V', 'mqttv5', '-q', '1', '-t', 'mosq/p', '-m', 'while away'])
  const { stdout } = await run('mosquitto_sub', [...common, '-C', '1', '-W', '5'])
  assert.equal(stdout, 'while away\n')
})
