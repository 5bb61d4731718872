import type { Config } from './config.js'
import type { ConnectionContext } from './connection.js'
import { isPromise, refused, type HookRunner } from './hooks.js'
import type { Session } from './session.js'
import type { ClientInfo, Subscription } from './types.js'

// A resumed session's subscriptions are authorized again for the client taking
// it, as on SUBSCRIBE: a rule changed while it was offline holds when it
// returns. What is revoked goes before anything is delivered, and so do the
// messages that waited for it alone. The hook host asks the same of every
// session after a reload changed the subscribe rules.

const NONE: string[] = []

/** The filters of `subs` that `client` may no longer have (a deny, or a pass where defaults.subscribe is deny; a failed check is a deny); the checks run concurrently. */
export function deniedSubscriptions(
  ctx: { readonly config: Config; readonly hooks: HookRunner },
  client: ClientInfo,
  subs: Subscription[],
): string[] | Promise<string[]> {
  if (subs.length === 0) return NONE
  const denied: string[] = []
  const allowed = ctx.config.defaults.subscribe === 'allow'
  let waits: Array<Promise<void>> | undefined
  for (const sub of subs) {
    const d = ctx.hooks.authorizeSubscribe(client, { filter: sub.filter, qos: sub.qos })
    if (isPromise(d))
      (waits ??= []).push(
        d.then(
          (r) => {
            if (refused(r, allowed)) denied.push(sub.filter)
          },
          () => {
            denied.push(sub.filter)
          },
        ),
      )
    else if (refused(d, allowed)) denied.push(sub.filter)
  }
  return waits === undefined ? denied : Promise.all(waits).then(() => denied)
}

/** Revokes `denied` of the resumed `session` and drops what waited for them alone (before it is attached). */
export function revokeOnResume(ctx: ConnectionContext, session: Session, denied: string[]): void {
  for (const filter of ctx.revokeSubscriptions(session.clientId, denied)) ctx.log.info({ clientId: session.clientId, filter }, 'subscription revoked on resume')
}
