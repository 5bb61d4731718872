// A delayed link where the kernel has no netem: `node serve-delay.js <port>
// <broker port> <one-way ms>` accepts the generator's connections and relays
// every chunk to the broker, and back, `one-way ms` after it arrived (timers of
// one duration fire in the order they were set: the byte order holds). A real
// delay between sockets, made in user space: it costs the relay's CPU (on the
// generator's core), not the broker's.
import net from 'node:net'

const [port, target, oneWay] = process.argv.slice(2).map(Number) as [number, number, number]

function relay(from: net.Socket, to: net.Socket): void {
  from.on('data', (chunk: Buffer) => {
    setTimeout(() => {
      if (!to.destroyed) to.write(chunk)
    }, oneWay)
  })
  from.on('close', () => setTimeout(() => to.destroy(), oneWay))
  from.on('error', () => {})
}

net
  .createServer((client) => {
    client.setNoDelay(true)
    const broker = net.connect(target, '127.0.0.1')
    broker.setNoDelay(true)
    relay(client, broker)
    relay(broker, client)
  })
  .listen(port, '127.0.0.1', () => process.send?.('listening'))
