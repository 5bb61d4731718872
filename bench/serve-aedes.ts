// Aedes as a bench subject, in memory: `node serve-aedes.js <port>`.
import net from 'node:net'
import { Aedes } from 'aedes'

const port = Number(process.argv[2])
const aedes = await (Aedes as { createBroker(): Promise<{ handle: (socket: net.Socket) => void }> }).createBroker()
// TCP_NODELAY, as hookmq and the Mosquitto config set it: latency figures compare brokers, not Nagle
net.createServer((socket) => {
  socket.setNoDelay(true)
  aedes.handle(socket)
}).listen(port, '127.0.0.1')
