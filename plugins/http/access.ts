import { createHash, timingSafeEqual } from 'node:crypto'
import type http from 'node:http'
import { isAbsolute, relative, sep } from 'node:path'
import type { HookStatus } from '../host/host.js'

// Who may read the operator's endpoints, and what they show of the machine.

/** The configured tokens and their roles; a request's role from its `Authorization: Bearer` header (compared in constant time). */
export class Tokens {
  private readonly list: Array<{ token: BearerToken; role: 'read' | 'admin'; name: string }>

  constructor(tokens: ReadonlyArray<{ token: string; role: 'read' | 'admin'; name?: string }>) {
    this.list = tokens.map((t, i) => ({ token: new BearerToken(t.token), role: t.role, name: t.name ?? `token ${i + 1} (${t.role})` }))
  }

  /** the role and name of the token the request carries, if it is one of them */
  holder(req: http.IncomingMessage): { role: 'read' | 'admin'; name: string } | undefined {
    let found: { role: 'read' | 'admin'; name: string } | undefined
    for (const t of this.list) if (t.token.allows(req) && found?.role !== 'admin') found = t // every token is compared: no early exit
    return found === undefined ? undefined : { role: found.role, name: found.name }
  }
}

/** Checks `Authorization: Bearer <token>` in constant time (both sides hashed to one length). */
export class BearerToken {
  private readonly expected: Buffer

  constructor(token: string) {
    this.expected = digest(token)
  }

  allows(req: http.IncomingMessage): boolean {
    const m = /^Bearer +(\S+) *$/i.exec(req.headers.authorization ?? '')
    return timingSafeEqual(digest(m?.[1] ?? ''), this.expected) && m !== null
  }
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest()
}

/** Hook status with file paths relative to the hooks folder (errors too): the endpoint does not show the machine's layout. */
export function relativeHookStatus(status: HookStatus[], hooksDir: string | undefined): HookStatus[] {
  if (hooksDir === undefined) return status
  const rel = (file: string): string => (isAbsolute(file) ? relative(hooksDir, file) : file)
  const prefix = hooksDir.endsWith(sep) ? hooksDir : hooksDir + sep
  return status.map((s) => ({
    ...s,
    ...(s.file !== undefined ? { file: rel(s.file) } : {}),
    ...(s.error !== undefined
      ? { error: { ...s.error, message: s.error.message.split(prefix).join(''), ...(s.error.file !== undefined ? { file: rel(s.error.file) } : {}) } }
      : {}),
  }))
}
