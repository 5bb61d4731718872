// The test helpers, by what they start (test/support/): import from here.
export * from './support/lifecycle.js'
export * from './support/broker.js'
export * from './support/clients.js'
export * from './support/redis.js'
export * from './support/sink.js'
