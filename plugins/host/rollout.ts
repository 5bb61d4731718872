import { basename } from 'node:path'
import { HookmqError } from '../../core/index.js'
import type { HookDefinition, Rollout } from './define.js'

// What a loaded version is to the pipelines (rollout: { mode: 'shadow' } or
// { canary }), and how a canary splits the clients: a hash of the hook's
// name and the client id against the canary's share, so that a client meets
// the same version every time (and stays with the canary as its share grows).
// The shadow side (running, comparing, counting) is shadow.ts.

export type { Rollout } from './define.js'

/**
 * serve: enforces for every client (the default); shadow: runs beside the
 * enforced decisions, never enforces; canary: serves its share of client ids
 * in place of the version of the same name.
 */
export type Role = 'serve' | 'shadow' | 'canary'

const CANARY_FILE = /\.canary\.[cm]?[jt]s$/

/** `acl.canary.ts`: the canary of the hook its `name` names. */
export function isCanaryFile(file: string): boolean {
  return CANARY_FILE.test(basename(file))
}

/**
 * The role of a version from what it declares and its file's name. A
 * `*.canary.*` file must declare its share; `rollout.canary` elsewhere is
 * ignored (the file was promoted by renaming it: it serves every client), with
 * a warning to say so.
 */
export function roleOf(def: Pick<HookDefinition, 'rollout'>, file: string | undefined): { role: Role; share: number; ignored?: string } {
  const r: Rollout | undefined = def.rollout
  const canaryFile = file !== undefined && isCanaryFile(file)
  if (canaryFile && (r === undefined || !('canary' in r)))
    throw new HookmqError('HOOK_LOAD_FAILED', 'a <name>.canary.ts file must declare rollout: { canary: <share of clients, 0..1> }')
  if (r === undefined) return { role: 'serve', share: 0 }
  if ('mode' in r) return { role: 'shadow', share: 0 }
  if (canaryFile || file === undefined) return { role: 'canary', share: r.canary }
  return {
    role: 'serve',
    share: 0,
    ignored: 'rollout.canary is ignored outside a <name>.canary.ts file: this version serves every client (remove the rollout line)',
  }
}

/** True when `clientId` is in the `share` (0..1) of client ids that `name`'s canary serves: the same answer every time. */
export function inCanary(name: string, clientId: string, share: number): boolean {
  if (share <= 0) return false
  if (share >= 1) return true
  return hash(name, clientId) / 0x100000000 < share
}

/** FNV-1a over `name`, NUL, `clientId`, then murmur3's finaliser (sequential ids spread over the whole range). */
function hash(name: string, clientId: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193)
  h = Math.imul(h, 0x01000193) // the NUL between
  for (let i = 0; i < clientId.length; i++) h = Math.imul(h ^ clientId.charCodeAt(i), 0x01000193)
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/** One hook's canary as the split sees it. */
export interface Canary {
  readonly name: string
  readonly share: number
}

/**
 * The per-method lists a client meets when canaries serve: one set of lists
 * per combination of canaries (a bit each), made on first use. `build(mask)`
 * makes the lists with canary i in place of its stable version where bit i is set.
 */
export class CanarySplit<L> {
  private readonly byMask = new Map<number, L>()

  constructor(
    private readonly canaries: readonly Canary[],
    private readonly build: (mask: number) => L,
  ) {
    if (canaries.length > 30) throw new HookmqError('HOOK_LOAD_FAILED', 'more than 30 canaries at once')
  }

  for(clientId: string): L {
    let mask = 0
    for (let i = 0; i < this.canaries.length; i++) {
      const c = this.canaries[i]!
      if (inCanary(c.name, clientId, c.share)) mask |= 1 << i
    }
    let lists = this.byMask.get(mask)
    if (lists === undefined) this.byMask.set(mask, (lists = this.build(mask)))
    return lists
  }
}

/** A loaded version as the pipelines are built from it. */
export interface RolledOut {
  readonly name: string
  readonly def: HookDefinition
  readonly role: Role
  readonly share: number
}

export interface MethodLists<E> {
  authenticate: E[]
  authorizePublish: E[]
  authorizeSubscribe: E[]
  transform: E[]
  /** (a shadow's is never called: deliver hooks are not shadowed) */
  deliver: E[]
}

/** What the host runs: the lists every client meets (no canary), the canaries' split, and the shadows by method. */
export interface Pipelines<E> {
  lists: MethodLists<E>
  split: CanarySplit<MethodLists<E>> | undefined
  shadows: MethodLists<E>
}

/** The pipelines of the versions serving (in order): shadows aside, each canary in place of its stable version for its clients. */
export function pipelines<E extends RolledOut>(serving: readonly E[]): Pipelines<E> {
  const base = serving.filter((e) => e.role === 'serve')
  const canaries = serving.filter((e) => e.role === 'canary')
  const split =
    canaries.length === 0
      ? undefined
      : new CanarySplit(canaries, (mask) => {
          const chosen = new Set(canaries.filter((_, i) => (mask & (1 << i)) !== 0))
          const names = new Set([...chosen].map((c) => c.name))
          // (serving is in order: keeping it, each version stays at its own place)
          return byMethod(serving.filter((e) => (e.role === 'serve' && !names.has(e.name)) || chosen.has(e)))
        })
  return { lists: byMethod(base), split, shadows: byMethod(serving.filter((e) => e.role === 'shadow')) }
}

function byMethod<E extends RolledOut>(list: readonly E[]): MethodLists<E> {
  const has = (m: keyof MethodLists<E>): E[] => list.filter((e) => typeof e.def[m] === 'function')
  return {
    authenticate: has('authenticate'),
    authorizePublish: has('authorizePublish'),
    authorizeSubscribe: has('authorizeSubscribe'),
    transform: has('transform'),
    deliver: has('deliver'),
  }
}
