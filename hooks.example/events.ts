// events.ts — log who comes and goes.
//
// Event handlers only observe: they cannot refuse anything, and an error in one
// is logged without affecting the broker. Each handler gets the event's own
// arguments and then { config, log }; the logger is the hook's, so every line
// says it came from hook "events".
import { defineHook } from 'hookmq'

export default defineHook({
  name: 'events',
  on: {
    clientConnected(client, { sessionPresent }, { log }) {
      log.info({ clientId: client.id, user: client.username, remoteAddress: client.remoteAddress, sessionPresent }, 'client connected')
    },
    clientDisconnected(client, { reasonCode }, { log }) {
      log.info({ clientId: client.id, reasonCode }, 'client disconnected')
    },
  },
})
