// What `import ... from 'hookmq'` is typed as inside a hooks folder (`hookmq
// init` writes these declarations into it; `hookmq check` type-checks against
// them): the values a hook has wherever it runs (a worker-isolated hook's
// 'hookmq' is sandbox/hook-api.ts, not the whole package) and the types of
// every hook input, answer and context. Each name means what it means in the
// package entry (plugins/index.ts).

export * from './host/sandbox/hook-api.js'
export type * from './host/author-types.js'
export type {
  AuthenticateDecision,
  AuthenticateInput,
  BrokerEventName,
  BrokerEvents,
  ClientInfo,
  Decision,
  ExistingSession,
  Identity,
  Logger,
  Message,
  MessageProperties,
  PublishDecision,
  PublishOptions,
  QoS,
  SessionChoice,
  SubscribeDecision,
  SubscribeInput,
  Subscription,
  SubscriptionOptions,
} from '../core/index.js'
