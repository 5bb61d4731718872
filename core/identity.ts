import type { ExistingSession, SessionChoice } from './hooks.js'
import type { ClientInfo } from './types.js'

// Who owns a session. A client id is only a name the client picks; the owner is
// the identity authentication gave the connection that opened the session, and
// another identity may not resume it or take over its connection.

/** A session owner: an identity string, or null for an anonymous client. */
export type Identity = string | null

/**
 * The identity of an authenticated connection: the `user` an authenticate hook
 * attached when it is a non-empty string, or that object's non-empty string
 * `id`; else the MQTT user name when non-empty; else null (anonymous).
 * Identities are compared as exact strings, whatever their source.
 */
export function identityOf(client: ClientInfo): Identity {
  const user = client.user
  if (typeof user === 'string' && user.length > 0) return user
  if (user !== null && typeof user === 'object') {
    const id = (user as { id?: unknown }).id
    if (typeof id === 'string' && id.length > 0) return id
  }
  const name = client.username
  return name !== undefined && name.length > 0 ? name : null
}

/**
 * May `owner` have a session owned by `current`? An unknown owner (a session
 * stored before owners were recorded) goes to the first identity that resumes it.
 */
export function owns(owner: Identity, current: Identity | undefined): boolean {
  return current === undefined || current === owner
}

/**
 * What a CONNECT by `owner` does with the client id's `existing` session: the
 * hooks' answer when they gave one, else resume a session of its own and treat
 * another identity's by `mismatch` (the `sessions.identityMismatch` setting).
 */
export function chooseSession(
  existing: ExistingSession | undefined,
  owner: Identity,
  answer: SessionChoice | undefined,
  mismatch: 'refuse' | 'fresh',
): SessionChoice {
  if (existing === undefined) return 'resume' // nothing to resume, discard or protect
  if (answer !== undefined) return answer
  return owns(owner, existing.owner) ? 'resume' : mismatch
}
