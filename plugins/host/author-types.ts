// The hook author's types, as one list: the package entry (plugins/index.ts)
// and a hooks folder's declarations (plugins/hook-types.ts) both export it,
// so a type added for hook authors is in both.

export type {
  AuthenticateAnswer,
  Awaitable,
  CallContext,
  ContinueAnswer,
  DeliverAnswer,
  DeliverInput,
  DenyAnswer,
  EventContext,
  EventHandlers,
  HookContext,
  HookDefinition,
  PublishAnswer,
  PublishInput,
  Rollout,
  SubscribeAnswer,
  SubscribeInput as HookSubscribeInput,
  TransformAnswer,
  TransformInput,
} from './define.js'
