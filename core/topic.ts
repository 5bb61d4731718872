// Topic name and filter rules of MQTT 5 section 4.7 (same in 3.1.1). Ill-formed
// UTF-8 and U+0000 from the network never reach these: the packet reader refuses
// them as bytes (core/wire-rules.ts); the null check here is for topics from code.

export interface TopicLimits {
  maxTopicLength: number
  maxTopicLevels: number
}

/** Returns a reason the topic name is invalid, or undefined when it is fine. */
export function checkTopicName(topic: string, limits: TopicLimits): string | undefined {
  const n = topic.length
  if (n === 0) return 'empty topic' // [MQTT-4.7.3-1]
  // (a UTF-16 unit is at most 3 UTF-8 bytes: most topics need no byte count)
  if (n * 3 > limits.maxTopicLength && Buffer.byteLength(topic) > limits.maxTopicLength) return 'topic too long'
  let levels = 1
  for (let i = 0; i < n; i++) {
    const c = topic.charCodeAt(i)
    if (c <= 0x2f) {
      // one test for the common letters and digits
      if (c === 0x2f) levels++
      else if (c === 0x23 || c === 0x2b)
        return 'wildcard in topic name' // [MQTT-3.3.2-2]
      else if (c === 0) return 'null character in topic' // [MQTT-4.7.3-2]
    }
  }
  if (levels > limits.maxTopicLevels) return 'too many topic levels'
  return undefined
}

/** Returns a reason the filter is invalid, or undefined when it is fine. */
export function checkTopicFilter(filter: string, limits: TopicLimits): string | undefined {
  if (filter.length === 0) return 'empty filter' // [MQTT-4.7.3-1]
  if (Buffer.byteLength(filter) > limits.maxTopicLength) return 'filter too long'
  const levels = filter.split('/')
  if (levels.length > limits.maxTopicLevels) return 'too many topic levels'
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i]!
    if (level.includes('\u0000')) return 'null character in filter' // [MQTT-4.7.3-2]
    if (level.includes('#') && (level !== '#' || i !== levels.length - 1)) return '"#" must be the last level on its own' // [MQTT-4.7.1-1]
    if (level.includes('+') && level !== '+') return '"+" must occupy a whole level' // [MQTT-4.7.1-2]
  }
  return undefined
}

export interface SharedFilter {
  group: string
  filter: string
}

/**
 * Splits `$share/group/filter`. Returns null for a plain filter and a string
 * (the reason) for a malformed share.
 */
export function parseShared(filter: string): SharedFilter | null | string {
  if (!filter.startsWith('$share/')) return null
  const rest = filter.slice(7)
  const slash = rest.indexOf('/')
  if (slash <= 0) return 'shared subscription needs a group and a filter' // [MQTT-4.8.2-1]
  const group = rest.slice(0, slash)
  if (group.includes('+') || group.includes('#')) return 'share name must not contain wildcards' // [MQTT-4.8.2-2]
  const inner = rest.slice(slash + 1)
  if (inner.length === 0) return 'shared subscription needs a filter'
  return { group, filter: inner }
}

/** True when `filter` matches `topic` (used off the hot path, e.g. retained). */
export function matchesFilter(filter: string, topic: string): boolean {
  if (topic.charCodeAt(0) === 0x24 && (filter.charCodeAt(0) === 0x2b || filter.charCodeAt(0) === 0x23)) return false // [MQTT-4.7.2-1]
  const f = filter.split('/')
  const t = topic.split('/')
  for (let i = 0; i < f.length; i++) {
    const level = f[i]!
    if (level === '#') return true
    if (i >= t.length) return false
    if (level !== '+' && level !== t[i]) return false
  }
  return f.length === t.length
}

/** A shared group's name across nodes and messages: `<group>/<filter>` (a group name has no '/'). */
export function sharedKey(group: string, filter: string): string {
  return group + '/' + filter
}

export function splitSharedKey(key: string): { group: string; filter: string } {
  const i = key.indexOf('/')
  return { group: key.slice(0, i), filter: key.slice(i + 1) }
}

/**
 * `compute(topic)`, remembered per topic name: at most `limit` names, all
 * forgotten at once when full (a flood of distinct topics costs one
 * computation each, never memory). The one per-topic cache of the project.
 */
export class TopicMemo<T> {
  private readonly seen = new Map<string, T>()

  constructor(
    private readonly compute: (topic: string) => T,
    private readonly limit = 10000,
  ) {}

  get(topic: string): T {
    let v = this.seen.get(topic)
    if (v === undefined) {
      v = this.compute(topic)
      if (this.seen.size >= this.limit) this.seen.clear()
      this.seen.set(topic, v)
    }
    return v
  }

  clear(): void {
    this.seen.clear()
  }
}
